/**
 * When to try a webhook again: exponential backoff with jitter from a floor, a receiver's `Retry-After`
 * honoured up to the longest wait, and all the waits of one alert bounded.
 */

export interface Backoff {
  /** The first wait, and the shortest: a `Retry-After: 0` does not make a retry at once. */
  baseMs: number;
  /** The longest single wait, `Retry-After` included. */
  maxMs: number;
  /** The longest all waits of one alert may add up to; past it the alert is given up. */
  totalMs: number;
}

/**
 * The wait before retry number `retry` (1 for the first): `baseMs · 2^(retry-1)`, plus up to half again
 * at random (so agents behind one outage do not retry in step), never less than a `Retry-After`, never
 * more than `maxMs`.
 */
export function retryWait(
  retry: number,
  b: Backoff,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  const exp = b.baseMs * 2 ** Math.min(retry - 1, 30);
  const jittered = exp * (1 + random() / 2);
  return Math.round(Math.min(b.maxMs, Math.max(b.baseMs, jittered, retryAfterMs ?? 0)));
}

/**
 * `Retry-After` (RFC 9110 §10.2.3): whole seconds or an HTTP date; in ms from `now`. Absent, empty or
 * unreadable is `undefined` (not 0, as `Number(null)` would make it).
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Math.min(Number(v), 1e9) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
