import { randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { definePlugin, jobChannels } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { PLUGIN_API_VERSION } from '../packages/core/src/plugins/plugin.js';
import { hello, type Rig, rig } from './helpers.js';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

describe('jobs (PROTOCOL.md section 5)', () => {
  it('relays the engine body byte for byte, with usage split across network chunks', async () => {
    r = await rig();
    r.engine.behave({ kind: 'split-usage' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
    const done = await job.done();
    const upstream = r.engine.requests.items.find((q) => q.path === '/v1/chat/completions')!;
    expect(job.body().equals(Buffer.concat(upstream.sent))).toBe(true);
    expect(done).toEqual({
      type: 'job_done',
      job_id: job.jobId,
      tokens: { input: 7, output: 5, input_tokens: 7, output_tokens: 5 },
      duration_ms: expect.any(Number),
    });
    // The usage line reached the agent in two reads and was still counted.
    expect(job.chunks.length).toBeGreaterThan(1);
  });

  it('publishes the milestones of each job on diagnostics channels, in order', async () => {
    r = await rig();
    const seen: [string, Record<string, unknown>][] = [];
    const names = Object.values(jobChannels).map((c) => String(c.name));
    const listeners = names.map((name) => {
      const fn = (message: unknown) => seen.push([name, message as Record<string, unknown>]);
      subscribe(name, fn);
      return () => unsubscribe(name, fn);
    });
    try {
      const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
      await job.done();
      const unknown = r.session.dispatch({ model_id: 'nope' });
      await unknown.done();
      const of = (id: string) => seen.filter(([, m]) => m.jobId === id);
      expect(of(job.jobId).map(([n]) => n)).toEqual([
        'usepod:job:received',
        'usepod:job:request',
        'usepod:job:response',
        'usepod:job:first-chunk',
        'usepod:job:end',
      ]);
      const [received, request, response, first, end] = of(job.jobId).map(([, m]) => m);
      expect(received).toEqual({ jobId: job.jobId, model: 'Qwen/Qwen3-14B', format: 'openai' });
      expect(request).toEqual({ jobId: job.jobId, backend: expect.stringContaining('vllm') });
      expect(response).toMatchObject({
        backend: request!.backend,
        contentType: expect.stringMatching(/^text\/event-stream/),
      });
      expect(first!.bytes).toBeGreaterThan(0);
      expect(end).toMatchObject({
        outcome: 'done',
        model: 'Qwen/Qwen3-14B',
        outputTokens: expect.any(Number),
      });
      // A job no backend serves is received and ends, with nothing in between.
      expect(of(unknown.jobId).map(([n]) => n)).toEqual(['usepod:job:received', 'usepod:job:end']);
      expect(of(unknown.jobId)[1]![1]).toMatchObject({ outcome: 'error', errorCode: 'model_not_loaded' });
      // A duplicate of a running job is ignored: one received, one end, for the one job.
      r.engine.behave({ kind: 'controlled' });
      const held = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
      const stream = await r.engine.controlled.waitFor();
      const again = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', job_id: held.jobId });
      // Frames are handled in order: once this one is answered, the duplicate has been seen.
      await r.session.dispatch({ model_id: 'nope' }).done();
      stream.end('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
      expect((await again.done()).type).toBe('job_done');
      expect(of(held.jobId).map(([n]) => n)).toEqual([
        'usepod:job:received',
        'usepod:job:request',
        'usepod:job:response',
        'usepod:job:first-chunk',
        'usepod:job:end',
      ]);
    } finally {
      for (const off of listeners) off();
    }
  });

  it('forces stream, the job model and usage, keeping the other stream_options of the client (5.2, corrected)', async () => {
    r = await rig();
    await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], stream: false } }).done();
    await r.session
      .dispatch({
        model_id: 'Qwen/Qwen3-14B',
        request: { model: 'other/model', messages: [], stream_options: { include_usage: false } },
      })
      .done();
    const [a, b] = r.engine.requests.items
      .filter((q) => q.path === '/v1/chat/completions')
      .map((q) => q.body);
    expect(a).toEqual({
      messages: [],
      stream: true,
      stream_options: { include_usage: true },
      model: 'Qwen/Qwen3-14B',
    });
    expect(b).toEqual({
      model: 'Qwen/Qwen3-14B',
      messages: [],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('answers out_of_capacity at max_concurrent', async () => {
    r = await rig({ config: { limits: { max_concurrent: 1 } } });
    r.engine.behave({ kind: 'controlled' });
    const first = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await r.engine.controlled.waitFor();
    const second = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(second).toMatchObject({ type: 'job_error', error_code: 'out_of_capacity', tokens_emitted: 0 });
    stream.end('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    expect((await first.done()).type).toBe('job_done');
  });

  it('answers model_not_loaded for a model no backend serves, and when the engine says not found', async () => {
    r = await rig();
    const unknown = await r.session.dispatch({ model_id: 'nope' }).done();
    expect(unknown).toMatchObject({ type: 'job_error', error_code: 'model_not_loaded', tokens_emitted: 0 });
    expect(r.engine.requests.items.some((q) => q.path === '/v1/chat/completions')).toBe(false);
    // The engine dropped the model after discovery: its 404 maps to model_not_loaded too.
    r.engine.models = [];
    const gone = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(gone).toMatchObject({ error_code: 'model_not_loaded' });
    expect(String(gone.message)).toContain('does not exist');
  });

  it('answers backend_unreachable when the engine cannot be reached', async () => {
    r = await rig();
    await r.engine.goDown();
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(res).toMatchObject({ type: 'job_error', error_code: 'backend_unreachable', tokens_emitted: 0 });
    expect(String(res.message)).toMatch(/ECONNREFUSED/);
  });

  it('answers backend_timeout past deadline_ms and aborts the upstream request', async () => {
    r = await rig();
    r.engine.behave({ kind: 'hang' });
    const aborted = r.engine.aborted.next();
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', deadline_ms: 150 }).done();
    expect(res).toEqual({
      type: 'job_error',
      job_id: expect.any(String),
      error_code: 'backend_timeout',
      message: 'backend exceeded deadline_ms (150 ms)',
      tokens_emitted: 0,
    });
    expect((await aborted).path).toBe('/v1/chat/completions');
  });

  it('counts an onJob hook that never answers against the deadline', async () => {
    const stuck = definePlugin(() => ({
      name: 'stuck-router',
      apiVersion: PLUGIN_API_VERSION,
      apply(hooks) {
        hooks.onJob.tapPromise('stuck', () => new Promise(() => {}));
      },
    }));
    r = await rig({ plugins: [vllmPlugin, stuck] });
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', deadline_ms: 150 }).done();
    expect(res).toMatchObject({ error_code: 'backend_timeout', tokens_emitted: 0 });
    expect(r.engine.requests.items.some((q) => q.path === '/v1/chat/completions')).toBe(false);
  });

  it('times out mid-stream too, reporting what was relayed', async () => {
    r = await rig();
    r.engine.behave({ kind: 'hang-after-first' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', deadline_ms: 200 });
    const res = await job.done();
    expect(res.error_code).toBe('backend_timeout');
    expect(res.tokens_emitted).toBe(job.body().length);
    expect(job.body().length).toBeGreaterThan(0);
  });

  it('answers auth_rejected_by_backend on a 401', async () => {
    const engine = await new VllmEmulator().start();
    r = await rig({
      engine,
      env: { VLLM_KEY: 'right-key-123' },
      config: { backends: [{ kind: 'vllm', url: engine.url, api_key_env: 'VLLM_KEY' }] },
    });
    engine.apiKey = 'other-key-456';
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(res).toMatchObject({ type: 'job_error', error_code: 'auth_rejected_by_backend' });
    // The key went upstream as a bearer token, and never into the message.
    const sent = engine.requests.items.find((q) => q.path === '/v1/chat/completions')!;
    expect(sent.headers.authorization).toBe('Bearer right-key-123');
    expect(String(res.message)).not.toContain('right-key-123');
  });

  it('answers internal with the status and body of a non-2xx answer', async () => {
    r = await rig();
    r.engine.behave({
      kind: 'status',
      status: 400,
      body: JSON.stringify(
        r.engine.errorBody(400, 'BadRequestError', "This model's maximum context length is 32768 tokens."),
      ),
    });
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(res).toMatchObject({ error_code: 'internal', tokens_emitted: 0 });
    expect(String(res.message)).toBe(
      "backend answered 400: This model's maximum context length is 32768 tokens.",
    );
  });

  it('reads the flat (<= v0.10.0) error shape too', async () => {
    r = await rig({ engine: await new VllmEmulator({ errorShape: 'flat' }).start() });
    r.engine.behave({
      kind: 'status',
      status: 500,
      body: JSON.stringify(r.engine.errorBody(500, 'InternalServerError', 'engine died')),
    });
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(res.message).toBe('backend answered 500: engine died');
  });

  it('relays an error event inside a 200 stream, then ends with job_error', async () => {
    r = await rig();
    r.engine.behave({ kind: 'error-in-stream', afterTokens: 2, message: 'CUDA out of memory' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
    const res = await job.done();
    expect(job.text()).toContain('"message": "CUDA out of memory"'.replace(': ', ':'));
    expect(job.text()).toContain('data: [DONE]');
    expect(res).toMatchObject({
      type: 'job_error',
      error_code: 'internal',
      message: 'backend stream error: CUDA out of memory',
    });
    expect(res.tokens_emitted).toBe(job.body().length);
  });

  it('ends a stream without [DONE] with job_error', async () => {
    r = await rig();
    r.engine.behave({ kind: 'no-done' });
    const res = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(res).toMatchObject({
      error_code: 'internal',
      message: 'backend stream ended without [DONE] or a finish reason',
    });
  });

  it('ends with job_error when the engine dies mid-stream, reporting relayed output', async () => {
    r = await rig();
    r.engine.behave({ kind: 'drop', afterTokens: 3 });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
    const res = await job.done();
    expect(res.error_code).toBe('internal');
    expect(Number(res.tokens_emitted)).toBeGreaterThan(0);
  });

  it('refuses a 200 that is not an event stream', async () => {
    r = await rig();
    r.engine.behave({ kind: 'not-sse', body: '<html>proxy error</html>', contentType: 'text/html' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const res = await job.done();
    expect(res).toMatchObject({ error_code: 'internal', tokens_emitted: 0 });
    expect(String(res.message)).toMatch(/content-type text\/html, not an event stream/);
    expect(job.chunks).toHaveLength(0);
  });

  it('cancel aborts the upstream request, frees the slot and sends no terminal frame', async () => {
    r = await rig({ config: { limits: { max_concurrent: 1 } } });
    r.engine.behave({ kind: 'slow', tokenDelayMs: 50 });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [], max_tokens: 1000 },
    });
    await job.firstChunk();
    const aborted = r.engine.aborted.next();
    r.session.cancel(job.jobId);
    await aborted;
    // The slot is free (max_concurrent 1): the next job is served.
    const next = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(next.type).toBe('job_done');
    expect(job.terminal).toBeUndefined();
    expect(r.session.frames.items.filter((f) => f.job_id === job.jobId && f.type !== 'job_chunk')).toEqual(
      [],
    );
    // Unknown and finished jobs: cancels are ignored.
    r.session.cancel(randomUUID());
    r.session.cancel(job.jobId);
    expect((await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
  });

  it('serves Anthropic-format jobs from /v1/messages and counts their usage', async () => {
    r = await rig();
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: { messages: [{ role: 'user', content: 'one two three' }], max_tokens: 4 },
    });
    const done = await job.done();
    expect(done.tokens).toEqual({ input: 8, output: 4, input_tokens: 8, output_tokens: 4 });
    expect(job.text()).toContain('event: message_stop');
    const req = r.engine.requests.items.find((q) => q.path === '/v1/messages')!;
    expect(req.body).toMatchObject({ model: 'Qwen/Qwen3-14B', stream: true });
    expect(req.body).not.toHaveProperty('stream_options');
  });
});

describe('heartbeats (PROTOCOL.md section 4)', () => {
  it('reports a real queue_depth while a job runs, and measured latencies after', async () => {
    r = await rig({ timing: { heartbeatIntervalMs: 100 } });
    r.engine.behave({ kind: 'controlled' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await r.engine.controlled.waitFor();
    const hb = await r.session.nextFrame('heartbeat');
    expect(hb).toMatchObject({ type: 'heartbeat', queue_depth: 1 });
    expect(Object.keys(hb).sort()).toEqual(
      [
        'error_rate_60s',
        'last_error_at',
        'last_error_code',
        'p50_latency_ms',
        'p95_latency_ms',
        'queue_depth',
        'tokens_per_sec_p50',
        'type',
      ].sort(),
    );
    await stream.write('data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n');
    await job.firstChunk();
    await stream.write('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":20}}\n\n');
    stream.end('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    await job.done();
    const after = await r.session.nextFrame('heartbeat');
    expect(after.queue_depth).toBe(0);
    expect(after.p50_latency_ms).toBeGreaterThanOrEqual(0);
    expect(after.tokens_per_sec_p50).toBeGreaterThan(0);
    expect(after.error_rate_60s).toBe(0);
    expect(after.last_error_at).toBeNull();
    await r.session.dispatch({ model_id: 'nope' }).done();
    const failed = await r.session.nextFrame('heartbeat');
    expect(failed.error_rate_60s).toBe(0.5);
    expect(failed.last_error_code).toBe('model_not_loaded');
    expect(Date.parse(String(failed.last_error_at))).toBeGreaterThan(0);
  });
});

describe('the job abort handed to a plugin', () => {
  it('passes the signal and its emitter explicitly; a cancel fires both, the emitter after the signal', async () => {
    const { Readable } = await import('node:stream');
    const { definePlugin } = await import('@usepod-agent/core');
    const seen: { req?: import('@usepod-agent/core/backend').StreamRequest; order: string[] } = { order: [] };
    const plugin = definePlugin(() => ({
      name: 'abort-probe',
      apiVersion: 1,
      kinds: ['abort-probe'],
      apply(_h, ctx) {
        ctx.registerBackend('abort-probe', () => ({
          kind: 'abort-probe',
          label: 'abort-probe',
          url: 'http://abort-probe',
          probe: async () => ({ healthy: true, models: [{ id: 'm' }] }),
          stream: async (req) => {
            seen.req = req;
            req.signal.addEventListener('abort', () => seen.order.push('signal'));
            req.abort?.on('abort', () => seen.order.push('emitter'));
            const body = new Readable({ read() {} });
            body.push('data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n');
            return { body, contentType: 'text/event-stream' };
          },
          close: async () => {},
        }));
      },
    }));
    const { createTestAgent } = await import('@usepod-agent/testkit');
    const t = await createTestAgent({
      plugins: [plugin],
      config: { backends: [{ kind: 'abort-probe', url: 'http://abort-probe' }] },
    });
    try {
      expect((await t.start()).ok).toBe(true);
      const session = await t.coordinator.firstAuthenticated();
      await session.capabilities();
      const job = session.dispatch({ model_id: 'm' });
      await job.firstChunk();
      expect(seen.req?.abort?.aborted).toBe(false);
      session.cancel(job.jobId);
      await t.agent.waitFor('online');
      // Until both were seen (the cancel crosses the WebSocket first), with a deadline, not 100 polls.
      for (const end = Date.now() + 10_000; seen.order.length < 2 && Date.now() < end; )
        await new Promise((r) => setTimeout(r, 5));
      expect(seen.order).toEqual(['signal', 'emitter']);
      expect(seen.req?.abort?.aborted).toBe(true);
    } finally {
      await t.close();
    }
  });
});
