import { PassThrough, Readable, Transform } from 'node:stream';
import { type AgentPlugin, definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  createPool,
  httpError,
  OpenAICompatibleBackend,
  readText,
  type StreamRequest,
  sendRequest,
  UsepodError,
} from '@usepod-agent/core/backend';
import vllm, { VllmBackend } from '@usepod-agent/plugin-vllm';
import { describe, expect, it } from 'vitest';
import { runConformance, type TestRunner } from './conformance.js';
import { VllmEmulator } from './emulators/vllm.js';

/** A tiny runner that records which conformance cases pass, to check that the suite catches faults. */
async function runSuite(plugin: AgentPlugin, capacity?: number): Promise<Map<string, string | undefined>> {
  const cases: { name: string; fn: () => unknown }[] = [];
  const before: (() => unknown)[] = [];
  const after: (() => unknown)[] = [];
  const runner: TestRunner = {
    describe: (_n, fn) => fn(),
    it: (name, fn) => cases.push({ name, fn }),
    beforeAll: (fn) => before.push(fn),
    afterAll: (fn) => after.push(fn),
  };
  runConformance({
    plugin,
    kind: 'vllm',
    model: 'Qwen/Qwen3-14B',
    emulator: () => new VllmEmulator().start(),
    test: runner,
    bounds: { deadline: 800, abort: 800 },
    ...(capacity ? { capacity } : {}),
  });
  const results = new Map<string, string | undefined>();
  try {
    for (const b of before) await b();
  } catch (err) {
    // The runner reports a failing beforeAll as the failure of every case.
    for (const c of cases) results.set(c.name, (err as Error).message);
    for (const a of after) await a();
    return results;
  }
  for (const c of cases) {
    try {
      await c.fn();
      results.set(c.name, undefined);
    } catch (err) {
      results.set(c.name, (err as Error).message);
    }
  }
  for (const a of after) await a();
  return results;
}

describe('runConformance', () => {
  it('passes a correct plugin', async () => {
    const results = await runSuite(vllm());
    expect([...results].filter(([, e]) => e)).toEqual([]);
    expect(results.size).toBe(21);
  }, 60_000);

  it('catches a plugin that ignores the abort signal, and one built for another API version', async () => {
    class Deaf extends VllmBackend {
      override stream(req: StreamRequest) {
        // Deaf to the job's abort in both its forms.
        const { abort: _ignored, ...rest } = req;
        return super.stream({ ...rest, signal: new AbortController().signal });
      }
    }
    const deaf = definePlugin(() => ({
      name: 'deaf',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend('vllm', (entry, b) => new Deaf({ url: entry.url!, log: b.log }));
      },
    }));
    const results = await runSuite(deaf());
    const failed = [...results].filter(([, e]) => e).map(([n]) => n);
    expect(failed).toEqual(['honours deadline_ms: backend_timeout, and the engine sees the disconnect']);
    const old = await runSuite({ ...vllm(), apiVersion: 0 });
    expect(old.get('has a name, the current plugin API version, and declares the kind')).toMatch(/API 0/);
  }, 60_000);

  it("holds a plugin to the engine's capacity: one that reports none is caught (issue 28)", async () => {
    const CAPACITY = "reports the engine's capacity, and the agent advertises no more requests at once";
    // A plugin for a one-request-at-a-time engine, written without readLoad: advertised for 8 at once.
    const blind = definePlugin(() => ({
      name: 'blind',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend(
          'vllm',
          (entry, b) => new OpenAICompatibleBackend({ kind: 'vllm', url: entry.url!, log: b.log }),
        );
      },
    }));
    const results = await runSuite(blind(), 1);
    expect([...results].filter(([, e]) => e).map(([n]) => n)).toEqual([CAPACITY]);
    expect(results.get(CAPACITY)).toMatch(
      /the engine runs 1 request\(s\) at once, but probe\(\) reports no capacity: return it as load\.capacity from readLoad\(\)/,
    );
    // The same plugin reporting the engine's one slot passes, and is advertised for one at a time.
    class Counted extends OpenAICompatibleBackend {
      protected override async readLoad(): Promise<BackendLoad> {
        return { capacity: 1 };
      }
    }
    const counted = definePlugin(() => ({
      name: 'counted',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend('vllm', (entry, b) => new Counted({ kind: 'vllm', url: entry.url!, log: b.log }));
      },
    }));
    const fixed = await runSuite(counted(), 1);
    expect([...fixed].filter(([, e]) => e)).toEqual([]);
  }, 60_000);
});

/** A vLLM plugin whose backend is `Flawed`: one deliberate mistake a plugin author could make. */
function flawedPlugin(name: string, Flawed: typeof VllmBackend): AgentPlugin {
  return definePlugin(() => ({
    name,
    apiVersion: 1,
    kinds: ['vllm'],
    apply(_h, ctx) {
      ctx.registerBackend('vllm', (entry, b) => new Flawed({ url: entry.url!, log: b.log }));
    },
  }))();
}

const failedCases = async (plugin: AgentPlugin) =>
  [...(await runSuite(plugin))].filter(([, e]) => e).map(([n]) => n);

describe('runConformance bites realistic plugin flaws', () => {
  it('a plugin that pipes the engine into its own stream and forgets the abort', async () => {
    class Unpiped extends VllmBackend {
      override async stream(req: StreamRequest) {
        const { abort: _a, ...rest } = req;
        const up = await super.stream({ ...rest, signal: new AbortController().signal });
        // pipe() does not destroy the source when the agent destroys the destination.
        return { ...up, body: up.body.pipe(new PassThrough()) };
      }
    }
    expect(await failedCases(flawedPlugin('unpiped', Unpiped))).toContain(
      'closes the upstream request within 800 ms of a cancel',
    );
  }, 60_000);

  it('a plugin that buffers the whole answer before yielding it', async () => {
    class Buffered extends VllmBackend {
      override async stream(req: StreamRequest) {
        const up = await super.stream(req);
        const chunks: Buffer[] = [];
        for await (const c of up.body) chunks.push(c as Buffer);
        return { ...up, body: Readable.from([Buffer.concat(chunks)]) };
      }
    }
    expect(await failedCases(flawedPlugin('buffered', Buffered))).toContain(
      'streams: the first bytes reach the coordinator before the engine finishes',
    );
  }, 60_000);

  it('a plugin that drops the [DONE] line, and one that rewrites line endings', async () => {
    const rewriting = (edit: (s: string) => string) =>
      class extends VllmBackend {
        override async stream(req: StreamRequest) {
          const up = await super.stream(req);
          const t = new Transform({ transform: (c, _e, cb) => cb(null, Buffer.from(edit(String(c)))) });
          return { ...up, body: up.body.pipe(t) };
        }
      };
    const RELAY = 'relays the engine bytes in order and unchanged, and ends with job_done';
    expect(
      await failedCases(
        flawedPlugin(
          'undone',
          rewriting((s) => s.replace('data: [DONE]\n\n', '')),
        ),
      ),
    ).toContain(RELAY);
    expect(
      await failedCases(
        flawedPlugin(
          'crlf',
          rewriting((s) => s.replaceAll('\n', '\r\n')),
        ),
      ),
    ).toContain(RELAY);
  }, 60_000);

  it('a plugin that lists invalid model ids and an unbounded number of models', async () => {
    class Junk extends VllmBackend {
      protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
        const real = await super.listModels(signal);
        const junk = Array.from({ length: 5_000 }, (_, i) => ({ id: `lora ${i}\n` }));
        return [...real, ...junk, ...real];
      }
    }
    expect(await failedCases(flawedPlugin('junk', Junk))).toEqual([
      'probe() lists each model once, by an id the agent can offer, within its limit',
    ]);
  }, 60_000);

  it('a plugin whose health check ignores the probe signal (hangs on a hanging engine)', async () => {
    class Stuck extends VllmBackend {
      protected override async checkHealth(): Promise<void> {
        const res = await sendRequest(this.pool, this.endpoint('/health'), { method: 'GET' });
        await readText(res.body, 1024);
      }
    }
    expect(await failedCases(flawedPlugin('stuck', Stuck))).toEqual([
      'probe() ends within its signal against an engine that never answers',
    ]);
  }, 60_000);

  it('a plugin that opens a new connection pool per job and never closes it', async () => {
    class Leaky extends VllmBackend {
      override async stream(req: StreamRequest) {
        const pool = createPool();
        const res = await sendRequest(pool, this.endpoint('/v1/chat/completions'), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(req.body),
          signal: req.signal,
        });
        if (res.status !== 200) throw httpError(res.status, await readText(res.body));
        return { body: res.body, contentType: 'text/event-stream' };
      }
    }
    expect(await failedCases(flawedPlugin('leaky', Leaky))).toEqual([
      'closes idempotently, leaving no socket open after probes and jobs',
    ]);
  }, 60_000);

  it('a plugin that throws plain errors for engine statuses, and one that treats 429 as a failure', async () => {
    class Plain extends VllmBackend {
      override async stream(req: StreamRequest) {
        return super.stream(req).catch((err: unknown) => {
          throw new Error(`engine failed: ${(err as Error).message}`);
        });
      }
    }
    expect(await failedCases(flawedPlugin('plain', Plain))).toContain(
      'maps a 401 to auth_rejected_by_backend',
    );
    class NoBusy extends VllmBackend {
      override async stream(req: StreamRequest) {
        return super.stream(req).catch((err: unknown) => {
          if (err instanceof UsepodError && err.code === 'USEPOD_BACKEND_BUSY')
            throw new UsepodError('USEPOD_BACKEND_HTTP', err.message, { status: 429 });
          throw err;
        });
      }
    }
    expect(await failedCases(flawedPlugin('nobusy', NoBusy))).toEqual(['maps a 429 to out_of_capacity']);
  }, 60_000);
});
