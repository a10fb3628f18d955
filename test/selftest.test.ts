import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SelfTestResult } from '@usepod-agent/core';
import { type TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { render } from '../packages/cli/src/commands/status.js';
import { homeEnv, runAgent, cli as runCli, type Scratch, scratch } from './cli.js';
import { hello, type Rig, rig } from './helpers.js';

/**
 * Self-tests (issue 19), over real sockets: a tiny request through each served model on the agent's own
 * timer; a model whose engine starts failing is withdrawn after two failures in a row (the coordinator
 * is told, and no job is routed to it) and comes back when it passes again; a test never runs while the
 * agent is at max_concurrent; the figures reach /status and /metrics.
 */
const MODEL = 'Qwen/Qwen3-14B';
const PROMPT = 'self-test, count to five';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

function nextResult(rr: Rig, pred: (x: SelfTestResult) => boolean, ms = 10_000): Promise<SelfTestResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no such self-test result in time')), ms);
    const on = ({ result: x }: { result: SelfTestResult }) => {
      if (!pred(x)) return;
      clearTimeout(timer);
      rr.t.agent.off('selftest', on);
      resolve(x);
    };
    rr.t.agent.on('selftest', on);
  });
}

describe('self-tests', () => {
  it('withdraws a model whose engine starts failing, and brings it back when it passes', async () => {
    r = await rig({
      config: {
        selftest: { prompt: PROMPT, max_tokens: 8 },
        observability: { prometheus_addr: '127.0.0.1:0' },
      },
      timing: { selftestIntervalMs: 40 },
    });
    const passed = await nextResult(r, (x) => x.ok);
    expect(passed).toMatchObject({ model: MODEL, kind: 'vllm', failures: 0, withdrawn: false });
    expect(passed.ttftMs).toBeGreaterThan(0);
    expect(passed.tokens).toBeGreaterThan(1);
    // The self-test is the request an operator would send: the configured prompt, streamed, with usage.
    const sent = r.engine.requests.items.find((q) => q.rawBody.includes(PROMPT))!;
    expect(sent.body).toMatchObject({ model: MODEL, max_tokens: 8, stream: true });

    const a = r.t.agent.statusAddress!;
    const status = (await (await fetch(`http://${a.host}:${a.port}/status`)).json()) as {
      backends: { models: { id: string; selftest: Record<string, unknown> | null }[] }[];
    };
    expect(status.backends[0]!.models[0]!.selftest).toMatchObject({ ok: true, withdrawn: false });
    expect(status.backends[0]!.models[0]!.selftest!.ttft_ms).toEqual(expect.any(Number));
    expect(render(r.t.agent.status(), 'here')).toMatch(
      /Qwen\/Qwen3-14B \(\d+, first token \d+ ms, [\d.]+ tok\/s\)/,
    );

    // The engine still lists the model but every completion fails: out of memory after a driver update.
    const failures: SelfTestResult[] = [];
    const onResult = ({ result: x }: { result: SelfTestResult }) => {
      if (!x.ok) failures.push(x);
    };
    r.t.agent.on('selftest', onResult);
    const withdrawnCaps = r.session.nextFrame('capabilities');
    r.engine.always({
      kind: 'status',
      status: 500,
      body: '{"error":{"message":"CUDA error: out of memory","type":"InternalServerError","code":500}}',
    });
    expect((await withdrawnCaps).models).toEqual([]);
    r.t.agent.off('selftest', onResult);
    // Withdrawn at the second failure in a row, not the first.
    expect(failures.slice(0, 2).map((f) => [f.failures, f.withdrawn])).toEqual([
      [1, false],
      [2, true],
    ]);
    expect(failures[0]!.error).toMatch(/out of memory/);
    // Figures of the last good test are kept; the job that still comes finds no backend for the model.
    expect(r.t.agent.selftestResults()[0]).toMatchObject({ ok: false, withdrawn: true });
    expect(r.t.agent.selftestResults()[0]!.ttftMs).toEqual(expect.any(Number));
    expect(render(r.t.agent.status(), 'here')).toMatch(/WITHDRAWN: failing its self-tests/);
    const refused = await r.session.dispatch({ model_id: MODEL, request: hello }).done();
    expect(refused.type).toBe('job_error');
    const metrics = await (await fetch(`http://${a.host}:${a.port}/metrics`)).text();
    expect(metrics).toMatch(/usepod_agent_model_withdrawn\{backend="[^"]+",model="Qwen\/Qwen3-14B"\} 1/);
    expect(metrics).toMatch(/usepod_agent_selftest_ok\{backend="[^"]+",model="Qwen\/Qwen3-14B"\} 0/);
    expect(metrics).toMatch(
      /usepod_agent_selftest_ttft_seconds\{backend="[^"]+",model="Qwen\/Qwen3-14B"\} \d/,
    );

    // The engine recovers: the next passing test brings the model back to the coordinator.
    const back = r.session.nextFrame('capabilities');
    r.engine.reset();
    expect(((await back).models as { model_id: string }[]).map((m) => m.model_id)).toEqual([MODEL]);
    expect(r.t.agent.selftestResults()[0]).toMatchObject({ ok: true, failures: 0, withdrawn: false });
    expect(await r.session.dispatch({ model_id: MODEL, request: hello }).done()).toMatchObject({
      type: 'job_done',
    });
  });

  it('never runs while the agent is at max_concurrent: an on-demand test waits for room', async () => {
    r = await rig({
      config: { limits: { max_concurrent: 1 }, selftest: { prompt: PROMPT } },
    });
    r.engine.behave({ kind: 'controlled' });
    const job = r.session.dispatch({ model_id: MODEL, request: hello });
    const stream = await r.engine.controlled.waitFor();
    const tested = r.t.agent.selftest();
    await new Promise((res) => setTimeout(res, 300));
    const isSelftest = (q: { rawBody: string }) => q.rawBody.includes(PROMPT);
    expect(r.engine.requests.items.filter(isSelftest)).toEqual([]);
    // The customer's job ends; the test goes through after it.
    const ended = Date.now();
    stream.end(
      'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n',
    );
    expect(await job.done()).toMatchObject({ type: 'job_done' });
    const [result] = await tested;
    expect(result).toMatchObject({ model: MODEL, ok: true });
    const requests = r.engine.requests.items.filter(isSelftest);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.at).toBeGreaterThanOrEqual(ended - 5);
  });

  it('is off unless [selftest] interval_s is set', async () => {
    r = await rig({ config: { selftest: { prompt: PROMPT } } });
    await r.session.dispatch({ model_id: MODEL, request: hello }).done();
    await new Promise((res) => setTimeout(res, 200));
    expect(r.engine.requests.items.filter((q) => q.rawBody.includes(PROMPT))).toEqual([]);
    expect(r.t.agent.selftestResults()).toEqual([]);
  });
});

describe('usepod-agent selftest', () => {
  let dir: string;
  let engine: VllmEmulator;
  let coordinator: TestCoordinator;
  let children: ChildProcess[];
  let s: Scratch;
  beforeEach(async () => {
    s = await scratch('usepod-selftest-');
    ({ dir, coordinator, engine, children } = s);
  });
  afterEach(() => s.close());
  const env = () => homeEnv(dir);
  const cli = (args: string[]) => runCli(args, { env: env(), cwd: dir });
  const config = async (extra = '') => {
    const path = join(dir, 'agent.toml');
    await writeFile(
      path,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n${extra}[observability]\nprometheus_addr = ""\n`,
    );
    return path;
  };

  it('with no agent running, tests the configured engines and prints the table', async () => {
    const cfg = await config(`[[backends]]\nkind = "vllm"\nname = "spare"\nurl = "http://127.0.0.1:9"\n`);
    const out = await cli(['selftest', '--config', cfg]);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^BACKEND\s+MODEL\s+RESULT\s+TTFT\s+TOK\/S\s+NOTE$/);
    expect(out.stdout).toMatch(/Qwen\/Qwen3-14B\s+ok\s+\d+ ms\s+[\d.]+\s+\d+ tokens/);
    // An engine that is down is a row that says so, and the exit code says not all is well.
    expect(out.stdout).toMatch(/spare\s+-\s+untested\s+-\s+-\s+\S/);
    expect(out.stdout).toMatch(/no agent running/);
    expect(out.code).toBe(1);
    // The same failure in JSON is the same exit code (issue 28).
    expect((await cli(['selftest', '--config', cfg, '--json'])).code).toBe(1);
    const json = JSON.parse(
      (await cli(['selftest', '--config', cfg, '--json', '--model', 'Qwen/Qwen3-14B'])).stdout,
    );
    expect(json.from).toBe('engines');
    expect(json.results).toEqual([expect.objectContaining({ model: 'Qwen/Qwen3-14B', ok: true })]);
  });

  it('records every self-test of the running agent in the ledger; --history sums them per model', async () => {
    const cfg = await config('[selftest]\ninterval_s = 0.1\n');
    const a = await runAgent(cfg, { env: env(), cwd: dir, coordinator, children });
    const history = async () =>
      JSON.parse((await cli(['selftest', '--config', cfg, '--history', '--json'])).stdout).rows;
    for (let i = 0; i < 100 && ((await history())[0]?.passed ?? 0) < 2; i++)
      await new Promise((res) => setTimeout(res, 100));
    engine.always({ kind: 'status', status: 500, body: '{"error":{"message":"CUDA error: out of memory"}}' });
    for (let i = 0; i < 100 && !(await history())[0]?.last_error; i++)
      await new Promise((res) => setTimeout(res, 100));
    a.child.kill('SIGTERM');
    await a.exited;
    const [row] = await history();
    expect(row).toMatchObject({
      backend: expect.stringMatching(/^vllm@/),
      model: 'Qwen/Qwen3-14B',
      ttft_ms_p50: expect.any(Number),
      tokens_per_sec_p50: expect.any(Number),
      last_error: expect.stringContaining('out of memory'),
    });
    expect(row.passed).toBeGreaterThanOrEqual(2);
    expect(row.tests).toBeGreaterThan(row.passed);
    const text = await cli(['selftest', '--config', cfg, '--history', '--since', '1h']);
    expect(text.stdout).toMatch(
      /^BACKEND\s+MODEL\s+PASSED\s+TTFT p50\s+TTFT p95\s+TOK\/S p50\s+LAST FAILURE$/m,
    );
    expect(text.stdout).toMatch(
      /Qwen\/Qwen3-14B\s+\d+\/\d+\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+\s+.*out of memory/,
    );
    // A failed test keeps no figures of its own in the ledger.
    const db = new Database(join(dir, 'id', 'ledger.db'), { readonly: true });
    expect(
      db.prepare('SELECT count(*) AS n FROM selftests WHERE ok = 0 AND ttft_ms IS NOT NULL').get(),
    ).toEqual({ n: 0 });
    db.close();
  });

  it('with -c naming another config on the same identity, tests that config’s engines, and says so (issue 28)', async () => {
    const cfg = await config();
    await runAgent(cfg, { env: env(), cwd: dir, coordinator, children, keyDir: join(dir, 'id') });
    const spare = await new VllmEmulator({ models: [{ id: 'spare/model', contextWindow: 4096 }] }).start();
    try {
      const otherCfg = join(dir, 'other.toml');
      await writeFile(
        otherCfg,
        `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${spare.url}"\n[observability]\nprometheus_addr = ""\n`,
      );
      const json = JSON.parse((await cli(['selftest', '--config', otherCfg, '--json'])).stdout);
      expect(json).toMatchObject({
        from: 'engines',
        results: [{ model: 'spare/model', ok: true }],
        why: expect.stringContaining('serves other engines than'),
      });
      const text = await cli(['selftest', '--config', otherCfg]);
      expect(text.stdout).toMatch(/spare\/model\s+ok/);
      expect(text.stdout).not.toContain(MODEL);
      expect(text.stdout).toContain(
        `(the agent running with identity ${join(dir, 'id', 'identity.key')} serves other engines than ${otherCfg}: this config's engines were tested directly)`,
      );
      // Its own config is still tested by the running agent.
      expect(JSON.parse((await cli(['selftest', '--config', cfg, '--json'])).stdout).from).toBe('agent');
    } finally {
      await spare.close();
    }
  }, 60_000);

  it('with the agent running, runs its round over the control socket', async () => {
    const cfg = await config();
    await runAgent(cfg, { env: env(), cwd: dir, coordinator, children, keyDir: join(dir, 'id') });
    const out = await cli(['selftest', '--config', cfg, '--json']);
    expect(JSON.parse(out.stdout)).toMatchObject({
      from: 'agent',
      results: [{ model: 'Qwen/Qwen3-14B', ok: true, withdrawn: false }],
      untested: [],
    });
    // `backends` shows what the running agent measured beside what the engine says.
    const listed = await cli(['backends', '--config', cfg, '--no-detect']);
    expect(listed.stdout.split('\n')[0]).toMatch(/LOADED\s+TTFT\s+TOK\/S\s+SELFTEST$/);
    expect(listed.stdout).toMatch(/Qwen\/Qwen3-14B\s+\S+\s+yes\s+\d+ms\s+[\d.]+/);
    const json = JSON.parse((await cli(['backends', '--config', cfg, '--no-detect', '--json'])).stdout);
    expect(json[0].models[0].selftest).toMatchObject({
      ok: true,
      withdrawn: false,
      ttft_ms: expect.any(Number),
    });
    // The engine starts failing: two on-demand rounds withdraw the model, and doctor names it.
    engine.always({ kind: 'status', status: 500, body: '{"error":{"message":"CUDA error: out of memory"}}' });
    await cli(['selftest', '--config', cfg]);
    const second = await cli(['selftest', '--config', cfg]);
    expect(second.stdout).toMatch(/Qwen\/Qwen3-14B\s+withdrawn\s+\d+ ms/);
    expect(second.code).toBe(1);
    const doctor = JSON.parse((await cli(['doctor', '--config', cfg, '--allow-insecure', '--json'])).stdout);
    expect(doctor.checks).toContainEqual(
      expect.objectContaining({
        name: expect.stringMatching(/^self-test vllm@/),
        level: 'warn',
        detail: expect.stringMatching(
          /Qwen\/Qwen3-14B is withdrawn after 2 failure\(s\) in a row: .*out of memory/,
        ),
      }),
    );
  }, 60_000);
});
