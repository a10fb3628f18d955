import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, homeEnv, runAgent, type Scratch, scratch } from './cli.js';

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

describe('[ledger] path', () => {
  it('a FIFO or a folder there is one line from earnings and doctor, never waited on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-files-'));
    try {
      const ledger = join(dir, 'ledger.db');
      const cfg = join(dir, 'agent.toml');
      await writeFile(
        cfg,
        `[identity]\nkey_path = "${join(dir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n[ledger]\npath = "${ledger}"\n`,
      );
      const env = homeEnv(dir);
      // SQLite opens a ledger it only reads O_RDONLY: on a FIFO nobody writes, that waited for good.
      expect(spawnSync('mkfifo', [ledger]).status).toBe(0);
      for (const [make, what] of [
        [async () => {}, 'not a regular file \\(a FIFO, a device or a socket\\)'],
        [() => rm(ledger).then(() => mkdir(ledger)), 'a folder'],
      ] as const) {
        await make();
        const line = new RegExp(`the ledger .*ledger\\.db is ${what}; point \\[ledger\\] path at a file`);
        const earnings = await cli(['earnings', '--config', cfg], { env, cwd: dir });
        expect(earnings.code, earnings.stderr).toBe(2);
        const first = earnings.stderr.trim().split('\n')[0]!;
        expect(first).toMatch(line);
        expect(first).toMatch(/\(USEPOD_LEDGER\)$/);
        expect(earnings.stderr).not.toMatch(/\n\s+at /);
        const doctor = await cli(['doctor', '--config', cfg], { env, cwd: dir });
        expect(doctor.stdout).toMatch(new RegExp(`WARN +ledger +${line.source}`));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 40_000);
});

describe('a plugin package in node_modules', () => {
  it('whose package.json is a FIFO or /dev/zero is no plugin: validate and the plugin list are not held', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-files-'));
    try {
      const cfg = join(dir, 'agent.toml');
      await writeFile(cfg, '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n');
      // The current folder's node_modules is searched (its own user's, not writable by others).
      const fifo = join(dir, 'node_modules', 'usepod-agent-plugin-fifo');
      const zero = join(dir, 'node_modules', '@x', 'usepod-agent-plugin-zero');
      await mkdir(fifo, { recursive: true });
      await mkdir(zero, { recursive: true });
      // Nobody writes into it: the loader's read waited for good, before any output.
      expect(spawnSync('mkfifo', [join(fifo, 'package.json')]).status).toBe(0);
      await symlink('/dev/zero', join(zero, 'package.json'));
      const out = await cli(['validate', '--config', cfg], { env: homeEnv(dir), cwd: dir });
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(/plugins +@usepod-agent\/plugin-vllm/);
      expect(out.stdout).not.toMatch(/plugin-(fifo|zero)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
