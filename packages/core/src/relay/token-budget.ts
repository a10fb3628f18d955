import type { JobFrame } from '../protocol/frames.js';

/**
 * `limits.max_tokens_per_minute`, enforced (the 0.3.x agent only advertised it).
 *
 * A rolling 60 s window. A finished job counts its real usage (input + output
 * tokens from the engine) at the time it ended. A job in flight holds a
 * reservation: its prompt estimate (request JSON bytes / 4) plus its
 * `max_tokens` (or `max_completion_tokens`; 1024 when it sets neither). A new
 * job is refused with `out_of_capacity` when used + reserved + its own
 * reservation would pass the limit. A job that would pass the limit on its own
 * is still accepted when nothing else is counted, so one large request is
 * never refused forever.
 */
const WINDOW_MS = 60_000;
const DEFAULT_OUTPUT_RESERVATION = 1024;

export function reservationFor(frame: JobFrame, requestBytes: number): number {
  const r = frame.request;
  const max = [r.max_tokens, r.max_completion_tokens, r.max_output_tokens].find(
    (v): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0,
  );
  return Math.ceil(requestBytes / 4) + Math.floor(max ?? DEFAULT_OUTPUT_RESERVATION);
}

export class TokenBudget {
  readonly #limit: number | undefined;
  readonly #now: () => number;
  readonly #spent: { at: number; tokens: number }[] = [];
  readonly #reserved = new Map<string, number>();

  constructor(limit: number | undefined, now: () => number = Date.now) {
    this.#limit = limit;
    this.#now = now;
  }

  get limit(): number | undefined {
    return this.#limit;
  }

  /** Tokens counted now: spent in the window plus reservations in flight. */
  used(): number {
    const horizon = this.#now() - WINDOW_MS;
    while (this.#spent.length > 0 && this.#spent[0]!.at <= horizon) this.#spent.shift();
    let n = 0;
    for (const s of this.#spent) n += s.tokens;
    for (const r of this.#reserved.values()) n += r;
    return n;
  }

  /** Reserves for a job; false when it would pass the limit. */
  tryReserve(jobId: string, tokens: number): boolean {
    if (this.#limit === undefined) return true;
    const used = this.used();
    if (used > 0 && used + tokens > this.#limit) return false;
    this.#reserved.set(jobId, tokens);
    return true;
  }

  /**
   * Ends a reservation, counting what the job really used. A job that relayed output but whose engine
   * reported no usage counts its whole reservation: a stream without usage must not run for free.
   */
  settle(jobId: string, tokensUsed: number, relayedBytes = 0): void {
    const reserved = this.#reserved.get(jobId);
    if (reserved === undefined || !this.#reserved.delete(jobId) || this.#limit === undefined) return;
    const counted = tokensUsed > 0 ? tokensUsed : relayedBytes > 0 ? reserved : 0;
    if (counted > 0) this.#spent.push({ at: this.#now(), tokens: counted });
  }
}
