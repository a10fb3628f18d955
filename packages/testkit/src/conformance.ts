import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { type AgentPlugin, type PluginFactory, silentLogger } from '@usepod-agent/core';
import {
  type Backend,
  type BackendConfig,
  backendKindOf,
  checkPlugin,
  checkStatus,
} from '@usepod-agent/core/backend';
import type { CoordinatorSession } from './coordinator.js';
import type { Behavior, RequestRecord } from './emulators/base.js';
import { createTestAgent, type TestAgent } from './test-agent.js';
import type { EventLog } from './wait.js';

/**
 * One conformance suite every backend plugin runs, first-party or not. It takes
 * the author's test runner (vitest, jest, mocha, node:test: anything with
 * describe/it/beforeAll/afterAll), the plugin, and a factory for an emulator of
 * the engine, and checks the contract the agent relies on.
 */

/** What the suite needs from an engine emulator; every testkit emulator has it. */
export interface ConformanceEmulator {
  readonly url: string;
  behave(behavior: Behavior): unknown;
  reset(): void;
  readonly requests: EventLog<RequestRecord>;
  readonly aborted: EventLog<RequestRecord>;
  goDown(): Promise<void>;
  comeUp(): Promise<void>;
  close(): Promise<void>;
  /**
   * How many requests the emulated engine runs at once for the model under test, as it is set up
   * (llama.cpp `--parallel`, LM Studio `parallel`, TGI `max_concurrent_requests`). Left out for an engine
   * with no fixed number (vLLM and SGLang schedule by KV cache). When set, the suite holds the plugin to it.
   */
  readonly capacity?: number | undefined;
}

export interface TestRunner {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void> | void, timeout?: number): unknown;
  beforeAll(fn: () => Promise<void> | void, timeout?: number): unknown;
  afterAll(fn: () => Promise<void> | void, timeout?: number): unknown;
}

export interface ConformanceOptions {
  /** The plugin as its package exports it. */
  plugin: AgentPlugin | PluginFactory<void>;
  /** The backend kind to test. */
  kind: string;
  /** A model the emulator serves. */
  model: string;
  emulator: () => Promise<ConformanceEmulator>;
  test: TestRunner;
  /** Extra fields of the `[[backends]]` entry (options, api_key_env...). */
  backend?: Partial<BackendConfig>;
  env?: Record<string, string>;
  /** How the engine says "no such model"; default an OpenAI-shaped 404. */
  notFound?: { status: number; body: string };
  /** The engine's capacity when the emulator cannot say it (a proxy to a real engine); wins over `emulator.capacity`. */
  capacity?: number;
  /** Time bounds, ms. */
  bounds?: { capabilities?: number; abort?: number; deadline?: number };
}

const OPENAI_NOT_FOUND = {
  status: 404,
  body: JSON.stringify({
    error: { message: 'The model `x` does not exist.', type: 'NotFoundError', code: 404 },
  }),
};

function countSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPWRAP').length;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function runConformance(opts: ConformanceOptions): void {
  const { test, kind, model } = opts;
  const bounds = { capabilities: 5_000, abort: 2_000, deadline: 2_000, ...opts.bounds };
  const plugin = typeof opts.plugin === 'function' ? checkPlugin(opts.plugin, 'plugin') : opts.plugin;

  test.describe(`usepod-agent plugin conformance: ${plugin.name} (${kind})`, () => {
    let emulator: ConformanceEmulator;
    let t: TestAgent;
    let session: CoordinatorSession;
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);

    test.beforeAll(async () => {
      process.on('unhandledRejection', onRejection);
      emulator = await opts.emulator();
      t = await createTestAgent({
        plugins: [plugin],
        // The suite provokes engine failures in a row on purpose: ejecting the engine after the third
        // (the agent's outlier rule) would hide the mapping of the next ones, which is what is tested.
        config: { backends: [{ kind, url: emulator.url, ...opts.backend }], selftest: { eject_after: 0 } },
        ...(opts.env ? { env: opts.env } : {}),
      });
      const started = await t.start();
      if (!started.ok) throw started.error;
      session = await t.coordinator.firstAuthenticated(bounds.capabilities);
    }, 30_000);

    test.afterAll(async () => {
      await t?.close();
      await emulator?.close();
      process.off('unhandledRejection', onRejection);
    }, 30_000);

    const job = (extra: Record<string, unknown> = {}) =>
      session.dispatch({
        model_id: model,
        request: { messages: [{ role: 'user', content: 'conformance' }], max_tokens: 6 },
        ...extra,
      });

    test.it('has a name, the current plugin API version, and declares the kind', () => {
      assert.equal(typeof plugin.name, 'string');
      assert.ok(plugin.name.length > 0);
      // The agent's own check: shape, the apiVersion literal, the core range.
      checkPlugin(plugin, plugin.name);
      if (plugin.kinds)
        assert.ok(plugin.kinds.includes(kind), `kinds ${JSON.stringify(plugin.kinds)} lacks "${kind}"`);
    });

    test.it(
      `advertises well-formed capabilities within ${bounds.capabilities} ms, claiming the served model`,
      async () => {
        const caps = await session.capabilities(bounds.capabilities);
        const models = caps.models as Record<string, unknown>[];
        const entry = models.find((m) => m.model_id === model);
        assert.ok(entry, `capabilities lack ${model}: ${JSON.stringify(models)}`);
        assert.equal(entry.backend, kind);
        if ('context_window' in entry)
          assert.ok(Number.isInteger(entry.context_window) && Number(entry.context_window) > 0);
        for (const m of models) assert.equal(typeof m.model_id, 'string');
      },
    );

    const newBackend = async (): Promise<Backend> => {
      const registered = await backendKindOf(plugin, kind);
      assert.ok(registered, `plugin did not register "${kind}"`);
      return registered.create({ kind, url: emulator.url, ...opts.backend } as BackendConfig, {
        apiKey: opts.backend?.api_key_env ? opts.env?.[opts.backend.api_key_env] : undefined,
        log: silentLogger,
      });
    };

    // An engine that runs N requests at once, offered for more, queues the rest while the coordinator's
    // deadlines run: the plugin must report N (issue 28), and the agent then advertises no more.
    test.it("reports the engine's capacity, and the agent advertises no more requests at once", async () => {
      const capacity = opts.capacity ?? emulator.capacity;
      if (capacity === undefined) return;
      const backend = await newBackend();
      let status: Awaited<ReturnType<Backend['probe']>>;
      try {
        status = await backend.probe();
      } finally {
        await backend.close();
      }
      assert.equal(status.healthy, true, status.detail);
      const reported = status.models.find((m) => m.id === model)?.capacity ?? status.load?.capacity;
      const guide = 'see "Load, capacity and context windows" in docs/plugins.md';
      assert.ok(
        reported !== undefined && reported <= capacity,
        `the engine runs ${capacity} request(s) at once, but probe() reports ${reported ?? 'no capacity'}: return it as load.capacity from readLoad() (or a model's capacity); ${guide}`,
      );
      const caps = await session.capabilities(bounds.capabilities);
      const entry = (caps.models as Record<string, unknown>[]).find((m) => m.model_id === model);
      assert.ok(entry, `capabilities lack ${model}`);
      assert.ok(
        Number(entry.max_concurrent) <= capacity,
        `advertised max_concurrent ${String(entry.max_concurrent)} for ${model}, but the engine runs ${capacity} at once; ${guide}`,
      );
    });

    test.it('passes on a model it does not serve', async () => {
      const res = await session.dispatch({ model_id: 'conformance/unknown-model' }).done();
      assert.equal(res.error_code, 'model_not_loaded');
    });

    test.it('relays the engine bytes in order and unchanged, and ends with job_done', async () => {
      emulator.reset();
      const run = job();
      const done = await run.done();
      assert.equal(done.type, 'job_done', JSON.stringify(done));
      const upstream = [...emulator.requests.items].reverse().find((r) => r.method === 'POST')!;
      assert.ok(upstream, 'the engine saw no POST');
      assert.ok(
        run.body().equals(Buffer.concat(upstream.sent)),
        'relayed bytes differ from what the engine sent',
      );
      const tokens = done.tokens as Record<string, number>;
      assert.ok(tokens.output! > 0, 'no output tokens were counted');
    });

    test.it('streams: the first bytes reach the coordinator before the engine finishes', async () => {
      emulator.reset();
      emulator.behave({ kind: 'slow', tokenDelayMs: 150 });
      const run = job();
      const first = await run.firstChunk();
      const firstAt = Date.now();
      await run.done();
      assert.ok(
        Date.now() - firstAt >= 300,
        'the first byte came only as the engine finished: stream() must not buffer the engine answer',
      );
      assert.ok(first.length > 0);
    });

    test.it(
      "passes the agent's self-test: a first token and a rate, through the plugin's stream",
      async () => {
        emulator.reset();
        const results = await t.agent.selftest();
        const mine = results.find((r) => r.model === model);
        assert.ok(mine, `the self-test did not reach "${model}": ${JSON.stringify(results)}`);
        assert.equal(mine.ok, true, `self-test failed: ${mine.error}`);
        assert.ok(mine.ttftMs !== undefined && mine.ttftMs >= 0, 'no time to first token was measured');
      },
    );

    test.it(`closes the upstream request within ${bounds.abort} ms of a cancel`, async () => {
      emulator.reset();
      emulator.behave({ kind: 'hang-after-first' });
      const run = job();
      await run.firstChunk(5_000).catch(() => {
        throw new Error(
          'no byte reached the coordinator while the engine held its stream open: stream() must resolve with the body as it arrives, not after it ends',
        );
      });
      const started = Date.now();
      const aborted = emulator.aborted.next(() => true, bounds.abort, 'the engine to see the cancel');
      session.cancel(run.jobId);
      await aborted;
      assert.ok(Date.now() - started <= bounds.abort);
      assert.equal(run.terminal, undefined);
    });

    test.it('honours deadline_ms: backend_timeout, and the engine sees the disconnect', async () => {
      emulator.reset();
      emulator.behave({ kind: 'hang' });
      const aborted = emulator.aborted.next(
        () => true,
        300 + bounds.deadline,
        'the engine to see the deadline',
      );
      const res = await job({ deadline_ms: 300 }).done(300 + bounds.deadline);
      assert.equal(res.error_code, 'backend_timeout');
      await aborted;
    });

    const statusCases: [string, number, string, string][] = [
      [
        'a 400',
        400,
        JSON.stringify({ error: { message: 'bad request', type: 'invalid_request_error', code: 400 } }),
        'internal',
      ],
      [
        'a 500',
        500,
        JSON.stringify({ error: { message: 'engine failure', type: 'server_error', code: 500 } }),
        'internal',
      ],
      [
        'a 429',
        429,
        JSON.stringify({ error: { message: 'too many requests', code: 429 } }),
        'out_of_capacity',
      ],
      ['a 401', 401, JSON.stringify({ error: 'Unauthorized' }), 'auth_rejected_by_backend'],
      [
        'a 403',
        403,
        JSON.stringify({ error: { message: 'forbidden', code: 403 } }),
        'auth_rejected_by_backend',
      ],
    ];
    for (const [name, status, body, code] of statusCases) {
      test.it(`maps ${name} to ${code}`, async () => {
        emulator.reset();
        emulator.behave({ kind: 'status', status, body });
        const res = await job().done();
        assert.equal(res.error_code, code, JSON.stringify(res));
        assert.equal(res.tokens_emitted, 0);
      });
    }

    test.it('maps the engine saying "model not found" to model_not_loaded', async () => {
      emulator.reset();
      const nf = opts.notFound ?? OPENAI_NOT_FOUND;
      emulator.behave({ kind: 'status', status: nf.status, body: nf.body });
      const res = await job().done();
      assert.equal(res.error_code, 'model_not_loaded', JSON.stringify(res));
    });

    test.it('maps an error event inside a 200 stream to job_error', async () => {
      emulator.reset();
      emulator.behave({ kind: 'error-in-stream', afterTokens: 1 });
      const res = await job().done();
      assert.equal(res.type, 'job_error');
      assert.equal(res.error_code, 'internal');
    });

    test.it('maps a refused connection to backend_unreachable', async () => {
      emulator.reset();
      await emulator.goDown();
      try {
        const res = await job().done();
        assert.equal(res.error_code, 'backend_unreachable', JSON.stringify(res));
      } finally {
        await emulator.comeUp();
      }
      await t.agent.refresh();
    });

    test.it('probe() lists each model once, by an id the agent can offer, within its limit', async () => {
      const backend = await newBackend();
      try {
        const status = await backend.probe();
        assert.equal(status.healthy, true, status.detail);
        const { dropped } = checkStatus(status);
        assert.deepEqual(
          dropped,
          { invalidIds: 0, overLimit: 0 },
          'probe() reported models the agent drops (an id that is not a model id, a repeat, or past the per-backend limit): report only what the engine serves, by valid ids',
        );
      } finally {
        await backend.close();
      }
    });

    test.it('probe() ends within its signal against an engine that never answers', async () => {
      const sockets = new Set<Socket>();
      const server = createServer((s) => sockets.add(s.on('close', () => sockets.delete(s))));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as { port: number };
      const registered = await backendKindOf(plugin, kind);
      assert.ok(registered);
      const backend = await registered.create(
        { kind, ...opts.backend, url: `http://127.0.0.1:${port}` } as BackendConfig,
        {
          apiKey: opts.backend?.api_key_env ? opts.env?.[opts.backend.api_key_env] : undefined,
          log: silentLogger,
        },
      );
      let timer: NodeJS.Timeout | undefined;
      try {
        const probed = backend.probe(AbortSignal.timeout(300)).then(
          (s) => s,
          (err: unknown) => ({ healthy: false, models: [], detail: String(err) }),
        );
        const hung = new Promise<'hung'>((r) => {
          timer = setTimeout(() => r('hung'), 300 + bounds.abort);
        });
        const status = await Promise.race([probed, hung]);
        assert.notEqual(
          status,
          'hung',
          `probe() was still waiting ${bounds.abort} ms after its signal aborted: pass the signal to every engine request`,
        );
        assert.equal((status as { healthy: boolean }).healthy, false);
      } finally {
        clearTimeout(timer);
        await backend.close();
        for (const s of sockets) s.destroy();
        await new Promise((r) => server.close(r));
      }
    });

    test.it('closes idempotently, leaving no socket open after probes and jobs', async () => {
      emulator.reset();
      const before = countSockets();
      const backend = await newBackend();
      const status = await backend.probe();
      assert.equal(status.healthy, true, status.detail);
      // Jobs through the backend itself: a socket per job left open (a pool per request) shows here.
      for (let i = 0; i < 3; i++) {
        const up = await backend.stream({
          model,
          body: { model, messages: [{ role: 'user', content: 'conformance' }], max_tokens: 4, stream: true },
          format: 'openai',
          signal: new AbortController().signal,
        });
        for await (const _ of up.body);
      }
      await backend.close();
      await backend.close();
      await until(() => countSockets() <= before, 2_000, 'the backend sockets to close');
    });

    test.it('caused no unhandled rejection', () => {
      assert.deepEqual(rejections, []);
    });
  });
}
