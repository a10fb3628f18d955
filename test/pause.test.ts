import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, cli as runCli, type Scratch, scratch } from './cli.js';

/**
 * The CLI's own side of pause and resume (issue 19): the commands' output and exit codes against a real
 * `usepod-agent run`, and the flags refused before anything is sent. What the agent does with a pause
 * (jobs in flight finish, the owner's pause outlives a restart, hostile input on the socket and in
 * pause.json) is tested in-process in packages/plugin-control.
 */

let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let children: ChildProcess[];

let s: Scratch;
beforeEach(async () => {
  s = await scratch('usepod-pause-');
  ({ dir, coordinator, engine, children } = s);
});
afterEach(() => s.close());

const env = () => homeEnv(dir);
const keyDir = () => join(dir, 'id');

async function config(): Promise<string> {
  const path = join(dir, 'agent.toml');
  await writeFile(
    path,
    `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(keyDir(), 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[limits]\nmax_concurrent = 16\n[observability]\nprometheus_addr = "127.0.0.1:0"\n`,
  );
  return path;
}

const run = (cfg: string) => runAgent(cfg, { env: env(), cwd: dir, coordinator, children, keyDir: keyDir() });

const cli = (args: string[]) => runCli(args, { env: env(), cwd: dir });

describe('usepod-agent pause / resume', () => {
  it('pauses and resumes the running agent, each in one line; status, metrics, readiness and the ledger agree; selftest says it is paused', async () => {
    const cfg = await config();
    const a = await run(cfg);
    expect(a.caps.models).toHaveLength(1);

    const emptied = a.session.nextFrame('capabilities');
    const paused = await cli(['pause', '--config', cfg, '--for', '2h', '--reason', 'gaming']);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(/^Paused \(gaming\) until .*; jobs in flight finish\.$/m);
    expect((await emptied).models).toEqual([]);
    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      type: 'job_error',
      error_code: 'out_of_capacity',
    });

    const status = JSON.parse(
      (await cli(['status', '--config', cfg, '--json', '--addr', addrOf(a.stderr())])).stdout,
    );
    expect(status.paused).toMatchObject({ reason: 'gaming', until: expect.any(String) });
    const metrics = await (await fetch(`http://${addrOf(a.stderr())}/metrics`)).text();
    expect(metrics).toMatch(/^usepod_agent_paused 1$/m);
    expect((await fetch(`http://${addrOf(a.stderr())}/readyz`)).status).toBe(503);

    // Paused, the agent tests nothing: selftest says so and fails, never the last round's figures as "ok".
    const st = await cli(['selftest', '--config', cfg]);
    expect(st.code).toBe(1);
    expect(st.stderr).toMatch(/the agent is paused/);
    expect(st.stdout).not.toMatch(/\bok\b/);
    const stJson = await cli(['selftest', '--config', cfg, '--json']);
    expect(stJson.code).toBe(1);
    expect(JSON.parse(stJson.stdout)).toMatchObject({
      error: expect.stringMatching(/paused/),
      paused: { reason: 'gaming' },
      results: [],
    });

    const back = a.session.nextFrame('capabilities');
    const resumed = await cli(['resume', '--config', cfg]);
    expect(resumed.stdout).toMatch(/^Resumed: the agent advertises its models again\.$/m);
    expect(((await back).models as unknown[]).length).toBe(1);
    expect(existsSync(join(keyDir(), 'pause.json'))).toBe(false);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);

    const db = new Database(join(keyDir(), 'ledger.db'), { readonly: true });
    expect(db.prepare(`SELECT count(*) AS n FROM jobs WHERE refusal = 'paused'`).get()).toEqual({ n: 1 });
    db.close();
  }, 90_000);

  it('says in one line that no agent runs, and refuses a duration it cannot read or that never ends (exit 2)', async () => {
    const cfg = await config();
    const none = await cli(['pause', '--config', cfg]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(
      /^usepod-agent: no agent runs with identity .*identity\.key \(no control socket at .*agent\.sock\) \(USEPOD_AGENT_NOT_RUNNING\)$/m,
    );
    const bad = await cli(['pause', '--config', cfg, '--for', 'a while']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^usepod-agent: --for a while is not a duration/);
    // 300,000 years was an Invalid Date in the agent (a crash); anything past 100 years is a typo.
    for (const span of ['300000y', '101y', '1e400y', `${'9'.repeat(120)}y`, '0s']) {
      const far = await cli(['pause', '--config', cfg, '--for', span]);
      expect(far.code, span).toBe(2);
      expect(far.stderr, span).toMatch(
        /^usepod-agent: --for \S+ is (longer than 100 years|not a duration) \(USEPOD_USAGE\)$/m,
      );
      expect(far.stderr, span).not.toMatch(/\n\s+at /);
    }
    const long = await cli(['pause', '--config', cfg, '--reason', 'x'.repeat(201)]);
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(/^usepod-agent: --reason is 201 characters long \(USEPOD_USAGE\)$/m);
  }, 30_000);
});

describe('what an agent answers', () => {
  it('is folded before it reaches the terminal, and a resume that could not be saved is said', async () => {
    const cfg = await config();
    await mkdir(keyDir(), { recursive: true, mode: 0o700 });
    const esc = '\u001b]0;owned\u0007\u001b[2J';
    const hold = { by: 'owner', reason: `gaming${esc}`, until: null };
    // On the agent's socket, in the agent's own folder: an agent with a bug, or one of an older version.
    const server = createServer((c) =>
      c.once('data', (line) => {
        const cmd = (JSON.parse(String(line)) as { cmd: string }).cmd;
        const reply =
          cmd === 'pause'
            ? { ok: true, paused: hold, holds: [hold], warning: `not saved${esc}` }
            : { ok: true, paused: null, holds: [], warning: `pause.json could not be removed${esc}` };
        c.end(`${JSON.stringify(reply)}\n`);
      }),
    );
    await new Promise<void>((r) => server.listen(join(keyDir(), 'agent.sock'), r));
    try {
      const paused = await cli(['pause', '--config', cfg]);
      const resumed = await cli(['resume', '--config', cfg]);
      for (const out of [paused, resumed]) {
        expect(out.code, out.stderr).toBe(0);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: no control character may remain.
        expect(out.stdout + out.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
      }
      expect(paused.stdout).toMatch(/^Paused \(gaming.*\) until `usepod-agent resume`/m);
      expect(resumed.stderr).toMatch(/^usepod-agent: warning: pause\.json could not be removed/m);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

function addrOf(stderr: string): string {
  return /metrics and status served url=http:\/\/(127\.0\.0\.1:\d+)\/metrics/.exec(stderr)![1]!;
}
