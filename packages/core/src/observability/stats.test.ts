import { describe, expect, it } from 'vitest';
import { JobStats, percentile } from './stats.js';

describe('heartbeat statistics (PROTOCOL.md section 4)', () => {
  it('computes nearest-rank percentiles', () => {
    expect(percentile([], 50)).toBe(0);
    expect(percentile([5], 95)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
  });

  it('reports medians, p95 and the 60 s error rate from known timings', () => {
    let now = 1_000_000;
    const s = new JobStats({ now: () => now });
    const latencies = [100, 200, 300, 400, 1000];
    const speeds = [10, 20, 30, 40, 50];
    latencies.forEach((l, i) => {
      s.record({ firstByteMs: l, tokensPerSec: speeds[i], errorCode: undefined, cancelled: false });
    });
    now += 10_000;
    s.record({
      firstByteMs: undefined,
      tokensPerSec: undefined,
      errorCode: 'backend_timeout',
      cancelled: false,
    });
    const snap = s.snapshot(3);
    expect(snap).toEqual({
      queue_depth: 3,
      tokens_per_sec_p50: 30,
      p50_latency_ms: 300,
      p95_latency_ms: 1000,
      error_rate_60s: 1 / 6,
      last_error_at: new Date(now).toISOString(),
      last_error_code: 'backend_timeout',
    });
    // 61 s later the window holds no job: the rate is 0, the last error is kept.
    now += 61_000;
    const later = s.snapshot(0);
    expect(later.error_rate_60s).toBe(0);
    expect(later.last_error_code).toBe('backend_timeout');
    expect(later.p50_latency_ms).toBe(300);
  });

  it('reports zeros before any job', () => {
    expect(new JobStats().snapshot(0)).toEqual({
      queue_depth: 0,
      tokens_per_sec_p50: 0,
      p50_latency_ms: 0,
      p95_latency_ms: 0,
      error_rate_60s: 0,
      last_error_at: null,
      last_error_code: null,
    });
  });
});
