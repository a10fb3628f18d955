import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configureLogging, createLogger } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { hello, type Rig, rig } from './helpers.js';

let r: Rig | undefined;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function scrape(path: string): Promise<string> {
  const a = r!.t.agent.statusAddress!;
  const res = await fetch(`http://${a.host}:${a.port}${path}`);
  expect(res.status).toBe(200);
  return res.text();
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.split(' ').at(-1));
  }
  return undefined;
}

const metricsRig = () => rig({ config: { observability: { prometheus_addr: '127.0.0.1:0' } } });

describe('/healthz and /readyz for orchestrators (issue 20)', () => {
  async function probe(path: string): Promise<{ status: number; body: string }> {
    const a = r!.t.agent.statusAddress!;
    const res = await fetch(`http://${a.host}:${a.port}${path}`);
    return { status: res.status, body: await res.text() };
  }
  async function until(path: string, status: number): Promise<string> {
    for (let i = 0; i < 200; i++) {
      const p = await probe(path);
      if (p.status === status) return p.body;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error(`${path} never answered ${status}`);
  }

  it('is ready while authenticated with a model advertised; not when the engine or the coordinator goes', async () => {
    // Authentication after the first is held while the test looks: an agent that reconnects at once
    // (the test coordinator answers in microseconds) is otherwise ready again between two probes.
    let held: Promise<void> | undefined;
    let release = () => {};
    const coordinator = await TestCoordinator.start({
      authorize: async () => {
        await held;
        return { ok: true };
      },
    });
    onTestFinished(() => coordinator.close());
    r = await rig({
      coordinator,
      config: { observability: { prometheus_addr: '127.0.0.1:0' } },
      timing: { discoveryIntervalMs: 30 },
    });
    expect(await probe('/readyz')).toEqual({ status: 200, body: 'ready\n' });
    // The engine goes down: its models are withdrawn, so nothing can be served here.
    await r.engine.goDown();
    expect(await until('/readyz', 503)).toBe('not ready: no model advertised\n');
    expect((await probe('/healthz')).status).toBe(200);
    // It comes back: ready again once its model is advertised.
    await r.engine.comeUp();
    await until('/readyz', 200);
    // The coordinator connection drops: not ready until authenticated again.
    held = new Promise((res) => {
      release = res;
    });
    r.session.kill();
    expect(await until('/readyz', 503)).toMatch(/^not ready: not connected \((backoff|connecting)\)\n$/);
    expect((await probe('/healthz')).status).toBe(200);
    release();
    await until('/readyz', 200);
  });
});

describe('Prometheus metrics', () => {
  it('counts jobs, tokens, bytes, time to first byte and estimated earnings from real jobs', async () => {
    r = await metricsRig();
    r.engine.behave({ kind: 'controlled' });
    const first = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await r.engine.controlled.waitFor();
    expect(sample(await scrape('/metrics'), 'usepod_agent_jobs_in_flight')).toBe(1);
    await stream.write('data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n');
    stream.end(
      'data: {"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":2000}}\n\ndata: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
    );
    const job = await first.done();
    expect(job.type).toBe('job_done');
    await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done();
    await r.session.dispatch({ model_id: 'nope' }).done();
    const text = await scrape('/metrics');
    const backend = `vllm@127.0.0.1:${r.engine.port}`;
    expect(
      sample(text, 'usepod_agent_jobs_total', { outcome: 'done', model: 'Qwen/Qwen3-14B', backend }),
    ).toBe(2);
    expect(
      sample(text, 'usepod_agent_jobs_total', {
        outcome: 'error',
        error_code: 'model_not_loaded',
        // Not an advertised model: the coordinator's name is not made a series (issue 14).
        model: 'other',
      }),
    ).toBe(1);
    expect(sample(text, 'usepod_agent_jobs_in_flight')).toBe(0);
    expect(sample(text, 'usepod_agent_input_tokens_total', { model: 'Qwen/Qwen3-14B' })).toBe(1000 + 7);
    expect(sample(text, 'usepod_agent_output_tokens_total', { model: 'Qwen/Qwen3-14B' })).toBe(2000 + 5);
    expect(sample(text, 'usepod_agent_time_to_first_byte_seconds_count', { model: 'Qwen/Qwen3-14B' })).toBe(
      2,
    );
    expect(
      sample(text, 'usepod_agent_job_duration_seconds_count', { model: 'Qwen/Qwen3-14B', outcome: 'done' }),
    ).toBe(2);
    expect(sample(text, 'usepod_agent_relayed_bytes_total', { model: 'Qwen/Qwen3-14B' })).toBeGreaterThan(0);
    // Default prices 500000 in / 750000 out per 1M tokens.
    expect(sample(text, 'usepod_agent_earnings_micro_usdc_total', { model: 'Qwen/Qwen3-14B' })).toBeCloseTo(
      (1007 * 500_000 + 2005 * 750_000) / 1e6,
      6,
    );
    expect(sample(text, 'usepod_agent_session_state', { state: 'online' })).toBe(1);
    expect(sample(text, 'usepod_agent_session_state', { state: 'backoff' })).toBe(0);
    expect(sample(text, 'usepod_agent_backend_up', { backend, kind: 'vllm' })).toBe(1);
    expect(sample(text, 'usepod_agent_engine_kv_cache_usage_ratio', { backend })).toBe(0.1);
    expect(sample(text, 'usepod_agent_advertised_models')).toBe(1);
    expect(sample(text, 'usepod_agent_process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE usepod_agent_jobs_total counter');
  });

  it('counts reconnects by how the session ended', async () => {
    r = await metricsRig();
    const next = r.t.coordinator.nextAuthenticated();
    r.session.drain('drain:deploy');
    await (await next).capabilities();
    expect(sample(await scrape('/metrics'), 'usepod_agent_reconnects_total', { after: 'deploy' })).toBe(1);
  });

  it('keeps serving when the metrics address is taken, with a clear warning', async () => {
    r = await metricsRig();
    const taken = r.t.agent.statusAddress!;
    const engine = await new VllmEmulator().start();
    const t2 = await createTestAgent({
      plugins: [vllmPlugin],
      logLevel: 'warn',
      config: {
        backends: [{ kind: 'vllm', url: engine.url }],
        observability: { prometheus_addr: `127.0.0.1:${taken.port}` },
      },
    });
    cleanup.push(async () => {
      await t2.close();
      await engine.close();
    });
    expect((await t2.start()).ok).toBe(true);
    const s = await t2.coordinator.firstAuthenticated();
    await s.capabilities();
    expect((await s.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
    expect(t2.lines.some((l) => l.includes('metrics server not started') && l.includes('EADDRINUSE'))).toBe(
      true,
    );
  });
});

describe('status', () => {
  it('serves /status and `usepod-agent status` shows it', async () => {
    r = await metricsRig();
    await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done();
    const s = JSON.parse(await scrape('/status'));
    expect(s).toMatchObject({
      state: 'online',
      connected: true,
      coordinator: r.t.coordinator.url,
      provider_id: 'prov_1',
      jobs: { in_flight: 0, served: 1, failed: 0, cancelled: 0 },
      tokens: { input: 7, output: 5 },
      earnings: { micro_usdc: 7, usdc: 0.000007 },
    });
    expect(s.backends[0]).toMatchObject({
      kind: 'vllm',
      healthy: true,
      in_flight: 0,
      models: [{ id: 'Qwen/Qwen3-14B', context_window: 32768 }],
    });
    expect(s.models[0]).toMatchObject({ model_id: 'Qwen/Qwen3-14B' });
    expect(s.heartbeat).toHaveProperty('tokens_per_sec_p50');
    const a = r.t.agent.statusAddress!;
    const bin = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [bin, 'status', '--addr', `${a.host}:${a.port}`, ...args], (err, stdout) =>
          resolve({ code: err ? 1 : 0, stdout }),
        ),
      );
    const json = await run(['--json']);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({ provider_id: 'prov_1', jobs: { served: 1 } });
    // One naming style (issue 17): every key of the document is snake_case.
    const keys: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          keys.push(k);
          walk(x);
        }
      }
    };
    walk(doc);
    expect(keys.filter((k) => /[A-Z]/.test(k))).toEqual([]);
    const text = await run([]);
    expect(text.stdout).toMatch(/ONLINE/);
    expect(text.stdout).toMatch(/1 served, 0 missed, 0 failed/);
    expect(text.stdout).toMatch(/up\s+vllm@127\.0\.0\.1:\d+ {2}Qwen\/Qwen3-14B \(32768\)/);
  });
});

describe('log lines', () => {
  it('writes one key=value line per event: start, auth, capabilities, job ends, reconnects; never prompts', async () => {
    const lines: string[] = [];
    configureLogging({ level: 'info', format: 'text', sink: { write: (l) => lines.push(l) } });
    try {
      r = await rig({
        logger: createLogger('agent'),
        config: { coordinator: { enrollment_code: 'POD-ENROLL-SECRET9' } },
      });
      await r.session
        .dispatch({
          model_id: 'Qwen/Qwen3-14B',
          request: { messages: [{ role: 'user', content: 'my private prompt' }] },
        })
        .done();
      await r.session.dispatch({ model_id: 'nope' }).done();
      const next = r.t.coordinator.nextAuthenticated();
      r.session.kill();
      await (await next).capabilities();
      const all = lines.join('\n');
      const fp = r.t.agent.identity!.fingerprint;
      expect(all).toMatch(
        new RegExp(
          `INFO  agent agent started .*fingerprint=${fp} coordinator=ws://127\\.0\\.0\\.1:\\d+/provider/connect`,
        ),
      );
      expect(all).toMatch(/INFO {2}agent:session authenticated provider_id=prov_1/);
      expect(all).toMatch(/INFO {2}agent:session capabilities sent models=1/);
      expect(all).toMatch(
        /INFO {2}job done job=[0-9a-f]{8} model=Qwen\/Qwen3-14B via=vllm@127\.0\.0\.1:\d+ tok=\d+\+8 ms=\d+$/m,
      );
      expect(all).toMatch(/WARN {2}job model_not_loaded job=[0-9a-f]{8} model=nope tok=0\+0 ms=\d+$/m);
      expect(all).toMatch(/WARN {2}agent:session session ended unexpectedly kind=unexpected code=1006/);
      expect(all).toMatch(/INFO {2}agent:session reconnecting in_ms=\d+ after=unexpected/);
      expect(all).not.toContain('my private prompt');
      expect(all).not.toContain('POD-ENROLL-SECRET9');
      for (const l of lines) expect(l).not.toContain('\n');
      // JSON lines on request.
      lines.length = 0;
      configureLogging({ level: 'info', format: 'json', sink: { write: (l) => lines.push(l) } });
      await r.t.coordinator.authenticated.items.at(-1)!.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
      const ended = lines.map((l) => JSON.parse(l)).find((o) => o.area === 'job');
      expect(ended).toMatchObject({ level: 'info', msg: 'done', model: 'Qwen/Qwen3-14B' });
      expect(ended.tok).toMatch(/^\d+\+\d+$/);
    } finally {
      configureLogging({ level: 'error', format: 'text', sink: { write: () => {} } });
    }
  });

  it('maps --log-level onto debug namespaces and keeps DEBUG', () => {
    const lines: string[] = [];
    const log = createLogger('probe');
    configureLogging({ level: 'warn', sink: { write: (l) => lines.push(l) } });
    log.info('hidden');
    log.warn('shown');
    configureLogging({ level: 'debug', sink: { write: (l) => lines.push(l) } });
    log.debug('detail', { k: 'v w' });
    configureLogging({ level: 'error', sink: { write: () => {} } });
    expect(lines.map((l) => l.replace(/^\S+ /, ''))).toEqual([
      'WARN  probe shown',
      'DEBUG probe detail k="v w"',
    ]);
  });
});
