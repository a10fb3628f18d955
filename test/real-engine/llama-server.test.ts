import llamacppPlugin from '@usepod-agent/plugin-llamacpp';
import {
  type CoordinatorSession,
  createTestAgent,
  runConformance,
  type TestAgent,
  type TestAgentOptions,
} from '@usepod-agent/testkit';
import { ensureSlowModel, ensureTinyModel, LlamaServer, RealEngineProxy } from '@usepod-agent/testkit/real';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

/**
 * The agent against llama.cpp's own `llama-server` (b11669, tiny random-weight models): no emulator
 * between them, except a recording proxy where a test must see the engine's bytes or script a fault.
 */
const skip = process.env.USEPOD_SKIP_REAL_ENGINES === '1';
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function server(opts: { slow?: boolean; alias?: string; ctx?: number; parallel?: number } = {}) {
  const model = opts.slow ? await ensureSlowModel() : await ensureTinyModel();
  const s = await LlamaServer.start({
    model,
    alias: opts.alias ?? 'tiny',
    ctx: opts.ctx ?? 512,
    parallel: opts.parallel ?? 2,
  });
  cleanup.push(() => s.stop());
  return s;
}

async function agent(
  urls: string[],
  opts: TestAgentOptions = {},
): Promise<{ t: TestAgent; session: CoordinatorSession }> {
  const t = await createTestAgent({
    plugins: [llamacppPlugin],
    ...opts,
    config: {
      ...opts.config,
      backends: urls.map((url, i) => ({ kind: 'llamacpp', url, name: `llama-${i}` })),
    },
  });
  cleanup.push(() => t.close());
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await t.coordinator.firstAuthenticated();
  await session.capabilities();
  return { t, session };
}

const hi = (max = 8) => ({ messages: [{ role: 'user', content: 'hello there' }], max_tokens: max });

/** The usage object of a relayed chat stream (the `choices: []` chunk). */
function usageOf(text: string): Record<string, number> | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const chunk = JSON.parse(line.slice(6)) as { usage?: Record<string, number> };
    if (chunk.usage) return chunk.usage;
  }
  return undefined;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(skip)('the llamacpp plugin against the real server: runConformance()', () => {
  let real: LlamaServer;
  beforeAll(async () => {
    real = await LlamaServer.start({ model: await ensureTinyModel(), alias: 'tiny', ctx: 512, parallel: 2 });
  });
  afterAll(() => real?.stop());
  runConformance({
    plugin: llamacppPlugin,
    kind: 'llamacpp',
    model: 'tiny',
    test: { describe, it, beforeAll, afterAll },
    emulator: () => new RealEngineProxy(real.url).start(),
    // --parallel 2: the suite holds the plugin to the real server's two slots.
    capacity: 2,
  });
});

describe.skipIf(skip)('the agent end to end against the real server', () => {
  it('advertises the served window (n_ctx per slot) and the slots as capacity', async () => {
    const s = await server({ ctx: 512, parallel: 2 });
    const { session } = await agent([s.url]);
    const caps = await session.capabilities();
    expect(caps.models).toEqual([
      expect.objectContaining({
        model_id: 'tiny',
        backend: 'llamacpp',
        context_window: 256,
        max_concurrent: 2,
      }),
    ]);
  });

  it('relays a streamed job byte for byte, and job_done counts what the engine reported', async () => {
    const s = await server();
    const proxy = await new RealEngineProxy(s.url).start();
    cleanup.push(() => proxy.close());
    const { session } = await agent([proxy.url]);
    const job = session.dispatch({ model_id: 'tiny', request: hi(12) });
    const done = await job.done();
    const upstream = proxy.requests.items.filter((q) => q.path === '/v1/chat/completions').at(-1)!;
    expect(job.body().equals(Buffer.concat(upstream.sent))).toBe(true);
    const usage = usageOf(job.text())!;
    expect(done).toMatchObject({
      type: 'job_done',
      tokens: { input: usage.prompt_tokens, output: usage.completion_tokens },
    });
    expect(usage.completion_tokens).toBe(12);
  });

  it('a cancel frees the engine slot (watching /slots)', async () => {
    const s = await server({ slow: true, alias: 'slow', ctx: 2048, parallel: 1 });
    const { session } = await agent([s.url]);
    const job = session.dispatch({ model_id: 'slow', request: hi(1500) });
    await job.firstChunk();
    const busy = (await (await fetch(`${s.url}/slots`)).json()) as { is_processing: boolean }[];
    expect(busy[0]!.is_processing).toBe(true);
    session.cancel(job.jobId);
    await until('the slot to be free', async () => {
      const slots = (await (await fetch(`${s.url}/slots`)).json()) as { is_processing: boolean }[];
      return slots.every((x) => !x.is_processing) ? true : undefined;
    });
    expect(job.terminal).toBeUndefined();
  });

  it('a prompt over the context ends job_error carrying the engine message', async () => {
    const s = await server({ ctx: 512, parallel: 2 });
    const { session } = await agent([s.url]);
    const long = { messages: [{ role: 'user', content: 'hello '.repeat(300) }], max_tokens: 4 };
    const failed = await session.dispatch({ model_id: 'tiny', request: long }).done();
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal', tokens_emitted: 0 });
    expect(String(failed.message)).toMatch(/exceeds the available context size \(256 tokens\)/);
  });

  it('serves an Anthropic job natively, counting cached prompt tokens as input', async () => {
    const s = await server();
    const proxy = await new RealEngineProxy(s.url).start();
    cleanup.push(() => proxy.close());
    const { session } = await agent([proxy.url]);
    const request = { max_tokens: 4, messages: [{ role: 'user', content: 'hello there world' }] };
    // The second run of the same prompt finds most of it in the prompt cache.
    await session.dispatch({ model_id: 'tiny', format: 'anthropic', request }).done();
    const job = session.dispatch({ model_id: 'tiny', format: 'anthropic', request });
    const done = await job.done();
    expect(done.type, JSON.stringify(done)).toBe('job_done');
    expect(proxy.requests.items.at(-1)!.path).toBe('/v1/messages');
    const start = job
      .text()
      .split('\n')
      .find((l) => l.startsWith('data: {"type":"message_start"'));
    expect(start, job.text()).toBeDefined();
    const usage = (JSON.parse(start!.slice(6)) as { message: { usage: Record<string, number> } }).message
      .usage;
    expect(usage.cache_read_input_tokens).toBeGreaterThan(0);
    const prompt = usage.input_tokens! + (usage.cache_read_input_tokens ?? 0);
    expect(done).toMatchObject({ type: 'job_done', tokens: { input: prompt, output: 4 } });
  });

  it('an engine restart withdraws its models, and they come back once it serves again', async () => {
    const s = await server();
    const { t, session } = await agent([s.url], { timing: { discoveryIntervalMs: 3_600_000 } });
    await s.stop();
    const empty = session.nextFrame('capabilities');
    await t.agent.refresh();
    expect((await empty).models).toEqual([]);
    await s.launch();
    await s.ready();
    const back = session.nextFrame('capabilities');
    await t.agent.refresh();
    expect((await back).models).toEqual([expect.objectContaining({ model_id: 'tiny' })]);
  });

  it('a job that meets 503 Loading model fails over to a second server of the model', async () => {
    const a = await server({ alias: 'shared' });
    const b = await server({ alias: 'shared' });
    const { t, session } = await agent([a.url, b.url], {
      timing: { discoveryIntervalMs: 3_600_000 },
      logLevel: 'warn',
    });
    // A restart onto a larger model lengthens the loading window; wait until A answers 503 Loading model.
    await a.stop();
    await a.launch({ model: await ensureSlowModel() });
    await until('the 503 Loading model window', async () => {
      const r = await fetch(`${a.url}/health`).catch(() => undefined);
      return r?.status === 503 ? true : undefined;
    });
    const done = await session.dispatch({ model_id: 'shared', request: hi(4) }).done();
    expect(done.type).toBe('job_done');
    // It met A first, failed over, and discovery heard of it.
    expect(
      t.lines.some((l) => l.includes('backend unreachable, trying the next one') && l.includes('llama-0')),
    ).toBe(true);
  });

  it('16 concurrent jobs over two servers end exactly once each', async () => {
    const a = await server({ alias: 'shared', parallel: 4, ctx: 1024 });
    const b = await server({ alias: 'shared', parallel: 4, ctx: 1024 });
    const { session } = await agent([a.url, b.url], { config: { limits: { max_concurrent: 16 } } });
    const jobs = Array.from({ length: 16 }, () => session.dispatch({ model_id: 'shared', request: hi(16) }));
    const ends = await Promise.all(jobs.map((j) => j.done(30_000)));
    expect(ends.filter((e) => e.type !== 'job_done')).toEqual([]);
    // Both servers generated: the jobs were spread over them.
    for (const s of [a, b]) {
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(Number(/^llamacpp:tokens_predicted_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    }
    const terminals = session.frames.items.filter((f) => f.type === 'job_done' || f.type === 'job_error');
    expect(new Set(terminals.map((f) => f.job_id)).size).toBe(16);
    expect(terminals).toHaveLength(16);
  });
});
