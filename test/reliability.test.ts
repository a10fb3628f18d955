import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { AgentPlugin } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { afterEach, describe, expect, it } from 'vitest';
import { hello, type Rig, rig } from './helpers.js';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

const finish = 'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';

describe('graceful drain', () => {
  it('refuses new jobs, lets jobs in flight finish, then closes with 1000', async () => {
    r = await rig();
    r.engine.behave({ kind: 'controlled' });
    const inflight = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await r.engine.controlled.waitFor();
    const stopped = r.t.agent.stop({ graceMs: 10_000 });
    expect(r.t.agent.state).toBe('stopping');
    const refused = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(refused).toMatchObject({ error_code: 'out_of_capacity' });
    stream.end(finish);
    expect((await inflight.done()).type).toBe('job_done');
    await stopped;
    expect((await r.session.closed).code).toBe(1000);
    expect(r.t.agent.state).toBe('stopped');
  });

  it('ends what is still running after the grace period with job_error and aborts it upstream', async () => {
    r = await rig();
    r.engine.behave({ kind: 'hang-after-first' });
    const inflight = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    await inflight.firstChunk();
    const aborted = r.engine.aborted.next();
    await r.t.agent.stop({ graceMs: 100 });
    expect(await inflight.done()).toMatchObject({
      type: 'job_error',
      error_code: 'internal',
      message: 'agent shut down before the job finished',
    });
    await aborted;
    expect((await r.session.closed).code).toBe(1000);
  });
});

describe('backpressure', () => {
  it('pauses engine reads while the coordinator does not read, stays bounded, and delivers every byte in order', async () => {
    const high = 256 * 1024;
    r = await rig({
      timing: { highWaterBytes: high, lowWaterBytes: 64 * 1024 },
      config: { limits: { max_concurrent: 32 } },
    });
    const paused = once(r.t.agent, 'backpressure');
    r.session.pauseReading();
    const jobs = Array.from({ length: 16 }, () =>
      r!.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 4000 } }),
    );
    expect((await paused)[0]).toMatchObject({ congested: true });
    // Bounded: what waits in our send buffer is the high-water mark plus at most one read per stream.
    expect(r.t.agent.snapshot().outboundBytes).toBeLessThan(high + 16 * 96 * 1024);
    const resumed = once(r.t.agent, 'backpressure');
    r.session.resumeReading();
    expect((await resumed)[0]).toMatchObject({ congested: false });
    const results = await Promise.all(jobs.map((j) => j.done(30_000)));
    expect(results.every((d) => d.type === 'job_done')).toBe(true);
    const sent = r.engine.requests.items.filter((q) => q.path === '/v1/chat/completions');
    for (const j of jobs) {
      const body = j.body();
      const match = sent.find((q) => Buffer.concat(q.sent).equals(body));
      expect(match, `job ${j.jobId} bytes differ from every upstream body`).toBeDefined();
    }
  }, 60_000);

  it('cancels a job that waits on the coordinator: the engine sees the close, the others go on', async () => {
    r = await rig({
      timing: { highWaterBytes: 64 * 1024, lowWaterBytes: 16 * 1024 },
      config: { limits: { max_concurrent: 32 } },
    });
    const paused = once(r.t.agent, 'backpressure');
    r.session.pauseReading();
    const jobs = Array.from({ length: 8 }, () =>
      r!.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 4000 } }),
    );
    expect((await paused)[0]).toMatchObject({ congested: true });
    const victim = jobs[0]!;
    const ended = new Promise<{ outcome: string }>((resolve) =>
      r!.t.agent.on('job_end', ({ job: o }) => o.jobId === victim.jobId && resolve(o)),
    );
    const aborted = r.engine.aborted.next();
    r.session.cancel(victim.jobId);
    await aborted;
    expect((await ended).outcome).toBe('cancelled');
    r.session.resumeReading();
    const rest = await Promise.all(jobs.slice(1).map((j) => j.done(30_000)));
    expect(rest.every((d) => d.type === 'job_done')).toBe(true);
    expect(victim.terminal).toBeUndefined();
  }, 60_000);

  it('ends a job stalled past the limit with job_error', async () => {
    r = await rig({ timing: { highWaterBytes: 64 * 1024, lowWaterBytes: 16 * 1024, stallTimeoutMs: 300 } });
    const failed = new Promise((resolve) =>
      r!.t.agent.on('job_end', ({ job: o }) => o.outcome === 'error' && resolve(o)),
    );
    r.session.pauseReading();
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [], max_tokens: 4000 },
    });
    // Several megabytes must pile up before our own buffer fills (the kernel's absorbs the first).
    const more = Array.from({ length: 7 }, () =>
      r!.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 4000 } }),
    );
    await failed;
    r.session.resumeReading();
    const terminals = await Promise.all([job, ...more].map((j) => j.done(30_000)));
    const stalled = terminals.filter((t) => t.type === 'job_error');
    expect(stalled.length).toBeGreaterThan(0);
    for (const t of stalled)
      expect(t.message).toBe('job stalled: the coordinator did not read its output in time');
  }, 60_000);
});

describe('max_tokens_per_minute', () => {
  it('refuses a job that would pass the rolling budget with out_of_capacity', async () => {
    r = await rig({ config: { limits: { max_tokens_per_minute: 60 } } });
    r.engine.behave({ kind: 'controlled' });
    // Reserves its prompt estimate plus max_tokens 40.
    const first = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [], max_tokens: 40 },
    });
    const stream = await r.engine.controlled.waitFor();
    const second = await r.session
      .dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 40 } })
      .done();
    expect(second).toMatchObject({
      error_code: 'out_of_capacity',
      message: 'agent is at max_tokens_per_minute (60); try again shortly',
    });
    // The first job used 3 + 2 tokens: the window now holds 5, and a small job fits.
    stream.end(`data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n${finish}`);
    expect((await first.done()).type).toBe('job_done');
    const third = await r.session
      .dispatch({ model_id: 'Qwen/Qwen3-14B', request: { messages: [], max_tokens: 10 } })
      .done();
    expect(third.type).toBe('job_done');
  });
});

describe('inbound hardening', () => {
  it('survives 10,000 random and mutated frames during a streaming job, whose bytes arrive intact', async () => {
    r = await rig({ logLevel: 'warn' });
    r.engine.behave({ kind: 'slow', tokenDelayMs: 2 });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [], max_tokens: 400 },
    });
    await job.firstChunk();
    const seeds: Record<string, unknown>[] = [
      { type: 'job', job_id: randomUUID(), model_id: 'nope', request: { messages: [] } },
      { type: 'job_cancel', job_id: randomUUID() },
      { type: 'auth_challenge', nonce: 'AAAA' },
      { type: 'auth_ok', provider_id: 'prov_x' },
      { type: 'auth_failed', reason: 'x' },
      { type: 'heartbeat' },
    ];
    let rnd = 42;
    const next = () => {
      rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
      return rnd;
    };
    const pick = <T>(a: T[]): T => a[next() % a.length]!;
    const values: unknown[] = [
      null,
      true,
      0,
      -1,
      1e308,
      '',
      'x'.repeat(300),
      [],
      {},
      [1, 2],
      { a: { b: [] } },
      '\u0000',
      'Qwen/Qwen3-14B',
    ];
    let sent = 0;
    for (let i = 0; i < 10_000; i++) {
      const kind = next() % 4;
      if (kind === 0) {
        r.session.send(
          Buffer.from(Array.from({ length: next() % 64 }, () => next() % 256)).toString('latin1'),
        );
      } else if (kind === 1) {
        r.session.sendBinary(Buffer.from(Array.from({ length: next() % 32 }, () => next() % 256)));
      } else {
        const frame: Record<string, unknown> = { ...pick(seeds) };
        const keys = [
          'type',
          'job_id',
          'model_id',
          'request',
          'format',
          'deadline_ms',
          'nonce',
          'provider_id',
        ];
        for (let m = 0; m < 1 + (next() % 3); m++) {
          const k = pick(keys);
          if (next() % 3 === 0) delete frame[k];
          else frame[k] = pick(values);
        }
        // Never cancel the job under test: that would be a valid instruction, not noise.
        if (frame.type === 'job_cancel' && frame.job_id === job.jobId) continue;
        const text = JSON.stringify(frame);
        r.session.send(kind === 3 ? text.slice(0, next() % (text.length + 1)) : text);
      }
      sent++;
    }
    expect(sent).toBeGreaterThanOrEqual(10_000);
    const done = await job.done(30_000);
    expect(done.type).toBe('job_done');
    const upstream = r.engine.requests.items.find((q) => q.path === '/v1/chat/completions')!;
    expect(job.body().equals(Buffer.concat(upstream.sent))).toBe(true);
    expect(r.t.coordinator.sessions.items).toHaveLength(1);
    expect(r.t.agent.state).toBe('online');
    expect((await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done()).type).toBe(
      'job_done',
    );
  }, 60_000);

  it('refuses a request body over max_request_bytes, and drops the session on a frame over the frame limit', async () => {
    r = await rig({ config: { limits: { max_request_bytes: 16 * 1024 } } });
    const big = await r.session
      .dispatch({
        model_id: 'Qwen/Qwen3-14B',
        request: { messages: [{ role: 'user', content: 'x'.repeat(20_000) }] },
      })
      .done();
    expect(big).toMatchObject({ error_code: 'internal', message: 'request body exceeds 16384 bytes' });
    expect(r.engine.requests.items.some((q) => q.path === '/v1/chat/completions')).toBe(false);
    const ended = once(r.t.agent, 'disconnected');
    const next = r.t.coordinator.nextAuthenticated();
    r.session.send(JSON.stringify({ type: 'job', pad: 'y'.repeat(2 * 1024 * 1024) }));
    const [end] = await ended;
    expect(end).toMatchObject({
      kind: 'unexpected',
      why: 'the coordinator sent a frame over the 1048576-byte limit',
    });
    // The coordinator is told why: close code 1009 (message too big).
    expect((await r.session.closed).code).toBe(1009);
    await (await next).capabilities();
  });
});

describe('chaos', () => {
  it('coordinator killed mid-stream: reconnects, aborts upstream, leaks no socket or timer', async () => {
    const before = process.getActiveResourcesInfo();
    r = await rig();
    r.engine.behave({ kind: 'slow', tokenDelayMs: 20 });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [], max_tokens: 1000 },
    });
    await job.firstChunk();
    const aborted = r.engine.aborted.next();
    const next = r.t.coordinator.nextAuthenticated();
    r.session.kill();
    await aborted;
    await (await next).capabilities();
    await r.close();
    r = undefined;
    const after = process.getActiveResourcesInfo();
    const count = (list: string[], kind: string) => list.filter((x) => x === kind).length;
    expect(count(after, 'TCPSocketWrap')).toBeLessThanOrEqual(count(before, 'TCPSocketWrap'));
    expect(count(after, 'TCPServerWrap')).toBeLessThanOrEqual(count(before, 'TCPServerWrap'));
    expect(count(after, 'Timeout')).toBeLessThanOrEqual(count(before, 'Timeout'));
  });

  it('survives 100 drain-and-reconnect cycles in a row and still serves', async () => {
    r = await rig({ timing: { backoffInitialMs: 1, backoffMaxMs: 2 } });
    let session = r.session;
    for (let i = 0; i < 100; i++) {
      const next = r.t.coordinator.nextAuthenticated();
      session.drain(i % 2 ? 'drain:deploy' : 'drain:operator');
      session = await next;
      await session.capabilities();
    }
    expect((await session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done()).type).toBe(
      'job_done',
    );
    expect(r.t.coordinator.authenticated.items).toHaveLength(101);
  }, 60_000);
});

describe('a plugin whose start never finishes', () => {
  it('keeps the agent from serving only as long as the start bound: then it serves, and says which plugin', async () => {
    const stuck: AgentPlugin = {
      name: 'example:stuck-start',
      apiVersion: 1,
      apply: (hooks) => {
        // A plugin's bug, or a disk that does not answer: the promise never settles.
        hooks.onStart.tapPromise('example:stuck-start', () => new Promise<void>(() => {}));
      },
    };
    r = await rig({ plugins: [vllmPlugin, stuck], timing: { startHookTimeoutMs: 300 }, logLevel: 'warn' });
    expect((await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done()).type).toBe(
      'job_done',
    );
    const warned = r.t.lines.filter((l) => l.includes('onStart tap failed'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('example:stuck-start');
    expect(warned[0]).toContain('did not finish in 300 ms');
  });
});
