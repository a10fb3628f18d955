import { type LongTimer, longTimeout } from '@usepod-agent/core';
import type { Alert } from './formats.js';

/**
 * The rate limit: a token bucket of `max_per_hour` (bursts of up to 5) for each source of an event (a
 * backend, a plugin; else the event itself), on the monotonic clock, so one backend that flaps or one
 * noisy plugin spends its own budget, never another's. What it holds back is not dropped: the newest
 * alert on each subject (a backend's up or down) waits for its source's next token and replaces the one
 * waiting before it, so the owner's last word on a subject is its state now, however often it flapped,
 * and the alerts it held back are at most one per subject once the bucket refills.
 */

const BURST = 5;
/** Sources with a bucket of their own; past it, a new source shares its event's (a fixed few). */
const MAX_SOURCES = 32;
/** Subjects waiting at once for one source; past it, a new one is counted as held back, not kept. */
const MAX_WAITING_PER_SOURCE = 8;

interface Waiting {
  alert: Alert;
  source: string;
  /** Alerts on this subject it replaced: never sent, said in the one that is. */
  held: number;
}

export class Budget {
  readonly #perHour: number;
  readonly #burst: number;
  /** Called for each alert let through, with how many earlier alerts were held back for good. */
  readonly #emit: (alert: Alert, held: number) => void;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  /** In the order they first waited: a source's budget goes to its oldest subject first. */
  readonly #waiting = new Map<string, Waiting>();
  /** Held back with no room to wait: said in the next alert sent. */
  #lost = 0;
  #timer: LongTimer | undefined;

  constructor(perHour: number, emit: (alert: Alert, held: number) => void) {
    this.#perHour = perHour;
    this.#burst = Math.min(BURST, perHour);
    this.#emit = emit;
  }

  /** Sends `alert` now if its source has a token, else keeps it as its subject's newest word. */
  offer(alert: Alert): void {
    const subject = JSON.stringify([alert.event, alert.subject ?? null]);
    const before = this.#waiting.get(subject);
    if (before) {
      before.alert = alert;
      before.held++;
    } else {
      const source = this.#sourceOf(alert);
      let waiting = 0;
      for (const w of this.#waiting.values()) if (w.source === source) waiting++;
      if (waiting >= MAX_WAITING_PER_SOURCE) {
        this.#lost++;
        return;
      }
      this.#waiting.set(subject, { alert, source, held: 0 });
    }
    this.#flush();
  }

  /** Drops what waits: at shutdown a late "back" is moot. */
  close(): void {
    this.#timer?.cancel();
    this.#waiting.clear();
  }

  /** Lets through every waiting alert whose source has a token; wakes again at the next token. */
  #flush(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    // Monotonic: a wall clock stepped back a day must not hold every alert back for a day.
    const now = performance.now();
    let soonest = Number.POSITIVE_INFINITY;
    for (const [subject, w] of this.#waiting) {
      const b = this.#bucket(w.source, now);
      if (b.tokens < 1) {
        soonest = Math.min(soonest, ((1 - b.tokens) * 3_600_000) / this.#perHour);
        continue;
      }
      b.tokens -= 1;
      this.#waiting.delete(subject);
      this.#emit(w.alert, w.held + this.#lost);
      this.#lost = 0;
    }
    // +1: a timer may fire a fraction of a millisecond early; one that still finds no token waits again.
    if (soonest < Number.POSITIVE_INFINITY) this.#timer = longTimeout(() => this.#flush(), soonest + 1);
  }

  #sourceOf(alert: Alert): string {
    const own = JSON.stringify([alert.event, alert.source ?? null]);
    if (this.#buckets.has(own) || this.#buckets.size < MAX_SOURCES) return own;
    // A full bucket is as good as none: forget those, then share the event's if still no room.
    const now = performance.now();
    for (const key of this.#buckets.keys())
      if (this.#bucket(key, now).tokens >= this.#burst) this.#buckets.delete(key);
    return this.#buckets.size < MAX_SOURCES ? own : JSON.stringify([alert.event, null]);
  }

  #bucket(source: string, now: number): { tokens: number; at: number } {
    let b = this.#buckets.get(source);
    if (!b) {
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(source, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) * this.#perHour) / 3_600_000);
    b.at = now;
    return b;
  }
}
