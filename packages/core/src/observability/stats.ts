import type { HeartbeatFrame } from '../protocol/frames.js';

/**
 * The measurements behind heartbeats (PROTOCOL.md section 4) and metrics: one
 * record per finished job, kept in a bounded window, read by both.
 */
export interface JobSample {
  endedAt: number;
  /** job frame received -> first relayed byte, ms; undefined when nothing was relayed. */
  firstByteMs: number | undefined;
  /** Output tokens per second of generation (first byte -> end); undefined when unknown. */
  tokensPerSec: number | undefined;
  errorCode: string | undefined;
  cancelled: boolean;
}

/** The measurements of a heartbeat frame (PROTOCOL.md section 4), without its type. */
export type HeartbeatStats = Omit<HeartbeatFrame, 'type'>;

/** Nearest-rank percentile of an unsorted list; 0 for an empty one. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface StatsOptions {
  /** How many recent jobs the latency and speed figures cover. */
  recentJobs?: number;
  /** How old a sample may be and still count as recent, ms. */
  recentWindowMs?: number;
  /** Window of `error_rate_60s`, ms. */
  errorWindowMs?: number;
  now?: () => number;
}

export class JobStats {
  readonly #samples: JobSample[] = [];
  readonly #recentJobs: number;
  readonly #recentWindowMs: number;
  readonly #errorWindowMs: number;
  readonly #now: () => number;
  #lastErrorAt: number | undefined;
  #lastErrorCode: string | undefined;

  constructor(opts: StatsOptions = {}) {
    this.#recentJobs = opts.recentJobs ?? 200;
    this.#recentWindowMs = opts.recentWindowMs ?? 5 * 60_000;
    this.#errorWindowMs = opts.errorWindowMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  record(sample: Omit<JobSample, 'endedAt'> & { endedAt?: number }): void {
    const s: JobSample = { ...sample, endedAt: sample.endedAt ?? this.#now() };
    this.#samples.push(s);
    if (s.errorCode) {
      this.#lastErrorAt = s.endedAt;
      this.#lastErrorCode = s.errorCode;
    }
    this.#prune();
  }

  #prune(): void {
    const horizon = this.#now() - Math.max(this.#recentWindowMs, this.#errorWindowMs);
    while (this.#samples.length > 0 && this.#samples[0]!.endedAt < horizon) this.#samples.shift();
    // Bounded whatever the job rate: enough to cover both windows' statistics.
    const cap = Math.max(this.#recentJobs, 10_000);
    if (this.#samples.length > cap) this.#samples.splice(0, this.#samples.length - cap);
  }

  snapshot(queueDepth: number): HeartbeatStats {
    this.#prune();
    const now = this.#now();
    const recent = this.#samples
      .filter((s) => s.endedAt >= now - this.#recentWindowMs)
      .slice(-this.#recentJobs);
    const latencies = recent.flatMap((s) => (s.firstByteMs === undefined ? [] : [s.firstByteMs]));
    const speeds = recent.flatMap((s) => (s.tokensPerSec === undefined ? [] : [s.tokensPerSec]));
    const windowed = this.#samples.filter((s) => s.endedAt >= now - this.#errorWindowMs);
    const errors = windowed.filter((s) => s.errorCode !== undefined).length;
    return {
      queue_depth: queueDepth,
      tokens_per_sec_p50: Math.round(percentile(speeds, 50) * 10) / 10,
      p50_latency_ms: Math.round(percentile(latencies, 50)),
      p95_latency_ms: Math.round(percentile(latencies, 95)),
      error_rate_60s: windowed.length === 0 ? 0 : errors / windowed.length,
      last_error_at: this.#lastErrorAt === undefined ? null : new Date(this.#lastErrorAt).toISOString(),
      last_error_code: this.#lastErrorCode ?? null,
    };
  }
}
