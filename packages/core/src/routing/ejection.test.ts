import { describe, expect, it } from 'vitest';
import { httpError } from '../backend/http.js';
import { validateConfig } from '../config/validate.js';
import { UsepodError } from '../errors.js';
import { ABORTS } from '../relay/job.js';
import { cooldownMs, ejectionSettings, judgeJob } from './ejection.js';

const failed = (error: unknown) => judgeJob({ reason: undefined, error });

describe('judgeJob: what counts against a pair', () => {
  it('a job that finished ends the run', () => {
    expect(judgeJob(undefined)).toBe('ok');
  });

  it("counts the engine's failures: 5xx, refused, a cut or broken stream, a model it cannot run", () => {
    expect(failed(httpError(500, '{"error":{"message":"CUDA error: out of memory"}}'))).toBe('engine');
    expect(failed(httpError(502, ''))).toBe('engine');
    expect(failed(httpError(504, 'gateway timeout'))).toBe('engine');
    // A 503 that is neither "busy" nor "loading": the engine is broken.
    expect(failed(httpError(503, '{"error":"internal failure"}'))).toBe('engine');
    expect(failed(new UsepodError('USEPOD_BACKEND_UNREACHABLE', 'cannot reach x: ECONNREFUSED'))).toBe(
      'engine',
    );
    expect(failed(httpError(503, '{"error":{"type":"unavailable_error","message":"Loading model"}}'))).toBe(
      'engine',
    );
    expect(failed(new UsepodError('USEPOD_BACKEND_STREAM', 'backend stream error: boom'))).toBe('engine');
    // What undici throws when the engine cuts the body.
    expect(failed(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }))).toBe('engine');
    expect(failed(httpError(404, '{"error":"model \\"x\\" not found, try pulling it first"}'))).toBe(
      'engine',
    );
    expect(failed(httpError(401, 'bad key'))).toBe('engine');
    // The transport failed under a request (not an errno): the engine's side too.
    expect(
      failed(new UsepodError('USEPOD_BACKEND_HTTP', 'request to x failed: y', { cause: new Error('y') })),
    ).toBe('engine');
  });

  it("never counts a client's bad request, capacity, a cancel, a deadline or a drain", () => {
    expect(failed(httpError(400, '{"error":{"message":"max_tokens must be at least 1"}}'))).toBe('neutral');
    expect(failed(httpError(413, 'too large'))).toBe('neutral');
    expect(failed(httpError(422, 'unprocessable'))).toBe('neutral');
    // Busy is capacity: the coordinator routes elsewhere; ejecting would take a working engine out.
    expect(failed(httpError(429, 'slow down'))).toBe('neutral');
    expect(failed(httpError(503, '{"error":"server busy, please try again."}'))).toBe('neutral');
    // An engine without /v1/messages: the agent translates instead.
    expect(failed(httpError(404, 'no such route'))).toBe('neutral');
    // An error carried in a 200: whose fault cannot be told.
    expect(failed(new UsepodError('USEPOD_BACKEND_HTTP', 'backend answered 200 with an error: x'))).toBe(
      'neutral',
    );
    expect(failed(new UsepodError('USEPOD_PLUGIN_HOOK_FAILED', 'a tap threw'))).toBe('neutral');
    for (const reason of ['cancel', 'deadline', 'session', 'shutdown', 'stalled'] as const) {
      // Whatever the error that came with the abort, even one that looks like the engine's.
      expect(judgeJob({ reason, error: httpError(500, 'x') })).toBe('neutral');
      expect(judgeJob({ reason, error: ABORTS[reason] })).toBe('neutral');
    }
  });
});

describe('cooldown', () => {
  const s = { cooldownMs: 30_000, maxCooldownMs: 600_000 };

  it('doubles on each ejection in a row, up to its cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => cooldownMs(n, s))).toEqual([
      30_000, 60_000, 120_000, 240_000, 480_000, 600_000,
    ]);
    // However many repeats: a finite timer, never past the cap.
    expect(cooldownMs(10_000, s)).toBe(600_000);
  });

  it('is read from [selftest], with defaults', () => {
    expect(ejectionSettings(validateConfig({}).selftest)).toEqual({
      after: 3,
      cooldownMs: 30_000,
      maxCooldownMs: 600_000,
    });
    // A cap below the first cooldown is the first cooldown.
    const c = validateConfig({
      selftest: { eject_after: 0, eject_cooldown_s: 90, eject_cooldown_max_s: 10 },
    });
    expect(ejectionSettings(c.selftest)).toEqual({ after: 0, cooldownMs: 90_000, maxCooldownMs: 90_000 });
  });
});
