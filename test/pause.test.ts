import type { ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, cli as runCli, type Scratch, scratch } from './cli.js';

/**
 * Pause and resume (issue 19) through the real CLI: `usepod-agent pause` reaches the running agent over
 * its control socket; the coordinator is told no model is served; a job that still arrives is turned
 * away; the jobs in flight finish; the pause outlives a restart; `resume` brings the models back.
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

const FINISH =
  'data: {"choices":[{"delta":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n';

describe('usepod-agent pause / resume', () => {
  it('during eight running jobs: all eight finish, the ninth is turned away, the coordinator hears of no model', async () => {
    const cfg = await config();
    const a = await run(cfg);
    expect(a.caps.models).toHaveLength(1);
    expect(statSync(join(keyDir(), 'agent.sock')).mode & 0o777).toBe(0o600);
    engine.behave({ kind: 'controlled' }, { times: 8 });
    const jobs = Array.from({ length: 8 }, () => a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }));
    await engine.controlled.waitFor((_s) => engine.controlled.items.length >= 8);
    const streams = engine.controlled.items.slice(0, 8);
    expect(streams).toHaveLength(8);

    const emptied = a.session.nextFrame('capabilities');
    const paused = await cli(['pause', '--config', cfg, '--for', '2h', '--reason', 'gaming']);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(/^Paused \(gaming\) until .*; jobs in flight finish\.$/m);
    expect((await emptied).models).toEqual([]);

    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      type: 'job_error',
      error_code: 'out_of_capacity',
      message: expect.stringContaining('paused by its owner (gaming)'),
    });
    for (const s of streams) s.end(FINISH);
    for (const j of jobs) expect((await j.done()).type).toBe('job_done');

    const status = JSON.parse(
      (await cli(['status', '--config', cfg, '--json', '--addr', addrOf(a.stderr())])).stdout,
    );
    expect(status.paused).toMatchObject({ reason: 'gaming', until: expect.any(String) });
    const metrics = await (await fetch(`http://${addrOf(a.stderr())}/metrics`)).text();
    expect(metrics).toMatch(/^usepod_agent_paused 1$/m);
    expect((await fetch(`http://${addrOf(a.stderr())}/readyz`)).status).toBe(503);

    // The pause outlives a restart: the new session advertises nothing from its first frame.
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const b = await run(cfg);
    expect(b.caps.models).toEqual([]);
    const back = b.session.nextFrame('capabilities');
    const resumed = await cli(['resume', '--config', cfg]);
    expect(resumed.stdout).toMatch(/^Resumed: the agent advertises its models again\.$/m);
    expect(((await back).models as unknown[]).length).toBe(1);
    expect(existsSync(join(keyDir(), 'pause.json'))).toBe(false);
    expect((await b.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
    b.child.kill('SIGTERM');
    await b.exited;

    const db = new Database(join(keyDir(), 'ledger.db'), { readonly: true });
    expect(db.prepare(`SELECT count(*) AS n FROM jobs WHERE refusal = 'paused'`).get()).toEqual({ n: 1 });
    db.close();
  }, 90_000);

  it('says in one line that no agent runs, and refuses a duration it cannot read', async () => {
    const cfg = await config();
    const none = await cli(['pause', '--config', cfg]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(
      /^usepod-agent: no agent runs with identity .*identity\.key \(no control socket at .*agent\.sock\) \(USEPOD_AGENT_NOT_RUNNING\)$/m,
    );
    const bad = await cli(['pause', '--config', cfg, '--for', 'a while']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^usepod-agent: --for a while is not a duration/);
  }, 30_000);
});

function addrOf(stderr: string): string {
  return /metrics and status served url=http:\/\/(127\.0\.0\.1:\d+)\/metrics/.exec(stderr)![1]!;
}
