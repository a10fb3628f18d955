import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, type Scratch, scratch } from './cli.js';

/**
 * Files on disk are untrusted (issue 28's rule): a FIFO, a device or a folder planted where the agent or
 * a command reads or writes a file of its own is named in one line, never waited on or read whole.
 */
let s: Scratch | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

const config = (s: Scratch, extra = '') =>
  `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${join(s.dir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n[observability]\nprometheus_addr = "off"\n${extra}`;

describe('USEPOD_AGENT_LOG_FILE', () => {
  it('a FIFO nobody reads is not waited on: the agent serves, each line goes to stderr saying why', async () => {
    s = await scratch('usepod-files-');
    const fifo = join(s.dir, 'agent.log');
    // Nobody ever reads it: a blocking open for writing waited for good, on the first log line.
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const cfg = join(s.dir, 'agent.toml');
    await writeFile(cfg, config(s, '[ledger]\npath = "off"\n'));
    const agent = await runAgent(cfg, {
      env: homeEnv(s.dir, { USEPOD_AGENT_LOG_FILE: fifo }),
      cwd: s.dir,
      coordinator: s.coordinator,
      children: s.children,
    });
    expect(agent.stderr()).toMatch(/\(log file .*agent\.log not written: ENXIO/);
  }, 30_000);
});
