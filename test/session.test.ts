import { randomUUID } from 'node:crypto';
import { OllamaEmulator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyClose } from '../packages/core/src/protocol/session.js';
import { hello, type Rig, rig } from './helpers.js';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

describe('malformed frames after auth (PROTOCOL.md sections 1 and 5.1)', () => {
  it('survives bad JSON, no type, unknown types, bad UUIDs, missing fields and binary frames', async () => {
    r = await rig({ logLevel: 'debug' });
    const s = r.session;
    s.send('{not json');
    s.send('[]');
    s.send('{"no_type":1}');
    s.send({ type: 42 });
    s.send({ type: 'surprise' });
    s.send({ type: 'auth_challenge', nonce: 'AAAA' });
    s.send({ type: 'job', job_id: 'not-a-uuid', model_id: 'Qwen/Qwen3-14B', request: {} });
    s.send({ type: 'job', model_id: 'Qwen/Qwen3-14B', request: {} });
    s.send({ type: 'job_cancel' });
    s.sendBinary(Buffer.from([0, 1, 2]));
    const res = await s.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done();
    expect(res.type).toBe('job_done');
    // Same session throughout; the dropped jobs got no frames and reached no engine.
    expect(r.t.coordinator.sessions.items).toHaveLength(1);
    expect(r.engine.requests.items.filter((q) => q.path === '/v1/chat/completions')).toHaveLength(1);
    expect(s.frames.items.filter((f) => f.type === 'job_error')).toHaveLength(0);
    expect(
      r.t.lines.some((l) => l.includes('dropped malformed job frame') && l.includes('job_id must be a UUID')),
    ).toBe(true);
  });

  it('answers every job frame with a valid job_id: a job_error when it cannot run, never silence (5.1)', async () => {
    r = await rig();
    const s = r.session;
    const broken = [
      { job_id: randomUUID(), request: {} },
      { job_id: randomUUID(), model_id: 'Qwen/Qwen3-14B' },
      { job_id: randomUUID(), model_id: 'Qwen/Qwen3-14B', request: 'text' },
      { job_id: randomUUID(), model_id: '', request: {} },
    ];
    for (const b of broken) s.send({ type: 'job', ...b });
    for (const b of broken) {
      const err = await s.frames.waitFor((f) => f.job_id === b.job_id);
      expect(err).toMatchObject({ type: 'job_error', error_code: 'internal', tokens_emitted: 0 });
      expect(String(err.message)).toMatch(/^job frame refused: (model_id|request)/);
    }
    expect(r.engine.requests.items.filter((q) => q.path === '/v1/chat/completions')).toHaveLength(0);
  });

  it('serves jobs whose format or deadline_ms is null or unrecognised, with the defaults (0.3.x, 5.1)', async () => {
    r = await rig();
    const jobs = [
      r.session.dispatch({
        model_id: 'Qwen/Qwen3-14B',
        request: hello,
        raw: { format: null, deadline_ms: null },
      }),
      r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello, raw: { format: 'gemini' } }),
      r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello, raw: { format: 3, deadline_ms: -1 } }),
      r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello, raw: { deadline_ms: '100' } }),
    ];
    for (const j of jobs) expect((await j.done()).type).toBe('job_done');
    const paths = r.engine.requests.items.map((q) => q.path).filter((p) => p.startsWith('/v1/chat'));
    expect(paths).toHaveLength(4);
  });
});

describe('closing and reconnecting (PROTOCOL.md section 6)', () => {
  it('classifies close codes', () => {
    expect(classifyClose(1001, 'drain:deploy')).toBe('deploy');
    expect(classifyClose(1001, 'drain:operator')).toBe('operator');
    expect(classifyClose(1001, 'bye')).toBe('graceful');
    expect(classifyClose(1001, '')).toBe('graceful');
    expect(classifyClose(1005, '')).toBe('graceful');
    expect(classifyClose(1000, '')).toBe('unexpected');
    expect(classifyClose(1011, 'oops')).toBe('unexpected');
    expect(classifyClose(1006, '')).toBe('unexpected');
  });

  it('logs expected closes at info and unexpected ends as warnings, and reconnects', async () => {
    r = await rig({ logLevel: 'info' });
    const ends: string[] = [];
    r.t.agent.on('disconnected', (e) => ends.push(e.kind));
    const cases: [() => void, string][] = [
      [() => r!.t.coordinator.authenticated.items.at(-1)!.drain('drain:deploy'), 'deploy'],
      [() => r!.t.coordinator.authenticated.items.at(-1)!.drain('drain:operator'), 'operator'],
      [() => r!.t.coordinator.authenticated.items.at(-1)!.close(1001), 'graceful'],
      [() => r!.t.coordinator.authenticated.items.at(-1)!.close(), 'graceful'],
      [() => r!.t.coordinator.authenticated.items.at(-1)!.close(1011, 'internal'), 'unexpected'],
      [() => r!.t.coordinator.authenticated.items.at(-1)!.kill(), 'unexpected'],
    ];
    for (const [act] of cases) {
      const next = r.t.coordinator.nextAuthenticated();
      act();
      await next;
    }
    expect(ends).toEqual(cases.map(([, kind]) => kind));
    const closeLines = r.t.lines.filter(
      (l) => l.includes('session closed') || l.includes('session ended unexpectedly'),
    );
    expect(closeLines.map((l) => l.split(' ')[0])).toEqual(['info', 'info', 'info', 'info', 'warn', 'warn']);
    // Every new session is served.
    const last = r.t.coordinator.authenticated.items.at(-1)!;
    await last.capabilities();
    expect((await last.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
  });

  it('aborts every in-flight upstream request when the session dies, and does not replay it', async () => {
    r = await rig();
    r.engine.always({ kind: 'slow', tokenDelayMs: 30 });
    const jobs = [1, 2, 3].map(() =>
      r!.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 500 } }),
    );
    await Promise.all(jobs.map((j) => j.firstChunk()));
    const next = r.t.coordinator.nextAuthenticated();
    r.session.kill();
    await Promise.all(
      [1, 2, 3].map((n) => r!.engine.aborted.waitFor(() => r!.engine.aborted.items.length >= n)),
    );
    const s2 = await next;
    await s2.capabilities();
    expect(
      s2.frames.items.some((f) => f.type === 'job_chunk' || f.type === 'job_error' || f.type === 'job_done'),
    ).toBe(false);
    expect(r.t.agent.snapshot().inFlight).toBe(0);
  });
});

describe('capabilities over the wire (PROTOCOL.md section 3)', () => {
  it('sends an empty model list when no engine is healthy', async () => {
    const engine = await new VllmEmulator().start();
    await engine.goDown();
    r = await rig({ engine });
    const caps = await r.session.capabilities();
    expect(caps).toEqual({
      type: 'capabilities',
      models: [],
      limits: { max_concurrent_total: 8, max_tokens_per_minute: null },
      metadata: { agent_version: r.t.agent.agentVersion },
    });
  });

  it('advertises one entry per model across engines, sorted, with config prices and windows', async () => {
    const vllm = await new VllmEmulator({
      models: [
        { id: 'llama3.2:3b', contextWindow: 8192 },
        { id: 'B-model', contextWindow: 4096 },
      ],
    }).start();
    const ollama = await new OllamaEmulator().start();
    r = await rig({
      engine: vllm,
      extraEngines: [ollama],
      config: {
        backends: [
          { kind: 'ollama', url: ollama.url },
          { kind: 'vllm', url: vllm.url },
        ],
        pricing: { models: { 'B-model': { input_per_1m: 1, output_per_1m: 2 } } },
        limits: { max_concurrent: 4, max_tokens_per_minute: 1000 },
      },
    });
    const caps = await r.session.capabilities();
    expect(caps.models).toEqual([
      {
        model_id: 'B-model',
        input_per_1m: 1,
        output_per_1m: 2,
        max_concurrent: 4,
        backend: 'vllm',
        context_window: 4096,
      },
      {
        model_id: 'llama3.2:3b',
        input_per_1m: 500000,
        output_per_1m: 750000,
        max_concurrent: 4,
        backend: 'vllm',
        context_window: 4096,
      },
    ]);
    expect(caps.limits).toEqual({ max_concurrent_total: 4, max_tokens_per_minute: 1000 });
    // The shared model is served by either engine.
    expect((await r.session.dispatch({ model_id: 'llama3.2:3b', request: hello }).done()).type).toBe(
      'job_done',
    );
  });
});

describe('ping/pong (PROTOCOL.md section 1)', () => {
  it('answers WebSocket pings with pongs carrying the same payload', async () => {
    r = await rig();
    const pong = new Promise<Buffer>((resolve) => r!.session.ws.once('pong', resolve));
    r.session.ws.ping(Buffer.from('are-you-there'));
    expect((await pong).toString()).toBe('are-you-there');
  });
});
