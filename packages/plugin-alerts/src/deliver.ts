import { type Logger, type LongTimer, longTimeout, timeoutSignal } from '@usepod-agent/core';
import { type Backoff, parseRetryAfter, retryWait } from './backoff.js';
import { Budget } from './budget.js';
import { type AlertConfig, safeTarget } from './config.js';
import { type Alert, requestFor } from './formats.js';
import { text } from './text.js';

/**
 * One webhook's deliveries: a bounded queue sent one at a time, off every agent path; retries with
 * exponential backoff and jitter (`backoff.ts`; the receiver's `Retry-After` honoured up to the longest
 * wait) on network errors, 408, 429 and 5xx, all the waits of one alert bounded; the rate limit per
 * source (`budget.ts`) sends the newest word on what it held back later, saying how many it replaced.
 */

export interface DeliveryTiming {
  /** First retry delay, doubled each time, and the shortest (default 1 s). */
  retryBaseMs?: number;
  /** Longest wait between attempts, a `Retry-After` included (default 5 min). */
  retryMaxMs?: number;
  /** Longest all the waits of one alert may add up to (default 10 min). */
  retryTotalMs?: number;
  attempts?: number;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
}

/** What became of one alert: delivered (with the status), or why not. */
export interface DeliveryResult {
  ok: boolean;
  status?: number;
  attempts: number;
  /** The waits before each retry, in ms: the schedule it computed. */
  waits: number[];
  why?: string;
}

const MAX_QUEUE = 50;
/** `alerts test` is someone at a terminal: its retries wait this long at most in all. */
const SEND_NOW_TOTAL_MS = 15_000;

export class Delivery {
  readonly #cfg: AlertConfig;
  readonly #log: Logger;
  readonly #t: Required<DeliveryTiming>;
  readonly #queue: Alert[] = [];
  readonly #budget: Budget;
  /** Dropped from a full queue: said in the next alert queued. */
  #dropped = 0;
  #running: Promise<void> | undefined;
  #closed = false;
  readonly #abort = new AbortController();

  constructor(cfg: AlertConfig, log: Logger, timing: DeliveryTiming = {}) {
    this.#cfg = cfg;
    this.#log = log;
    this.#t = {
      retryBaseMs: timing.retryBaseMs ?? 1_000,
      retryMaxMs: timing.retryMaxMs ?? 300_000,
      retryTotalMs: timing.retryTotalMs ?? 600_000,
      attempts: timing.attempts ?? 6,
      timeoutMs: timing.timeoutMs ?? 10_000,
    };
    this.#budget = new Budget(cfg.max_per_hour, (alert, held) => this.#enqueue(alert, held));
  }

  get target(): string {
    return safeTarget(this.#cfg);
  }

  /** Queues an alert, or keeps it for when the rate limit lets it through; returns at once. */
  send(alert: Alert): void {
    if (!this.#closed) this.#budget.offer(alert);
  }

  #enqueue(alert: Alert, held: number): void {
    if (this.#queue.length >= MAX_QUEUE) {
      // The oldest that a later one on its subject supersedes, so no subject loses its newest word.
      const q = this.#queue;
      const stale = q.findIndex((a, i) =>
        q.some((b, j) => j > i && b.event === a.event && b.subject === a.subject),
      );
      q.splice(Math.max(stale, 0), 1);
      this.#dropped++;
    }
    held += this.#dropped;
    this.#dropped = 0;
    if (held > 0)
      alert = {
        ...alert,
        message: text`${alert.message}\n(${held} earlier alert(s) were held back by the rate limit)`,
      };
    this.#queue.push(alert);
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  /** Waits for the queue to empty, up to `ms`, then gives up on what is left. */
  async close(ms: number): Promise<void> {
    this.#closed = true;
    this.#budget.close();
    if (this.#running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#running, new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    }
    this.#abort.abort();
  }

  async #drain(): Promise<void> {
    for (let a = this.#queue.shift(); a; a = this.#queue.shift()) await this.#deliver(a);
  }

  /**
   * Sends one alert now, past the queue and the rate limit (`usepod-agent alerts test`), with at most
   * `attempts` tries; resolves with what happened.
   */
  sendNow(alert: Alert, attempts = 2): Promise<DeliveryResult> {
    return this.#deliver(alert, attempts, Math.min(this.#t.retryTotalMs, SEND_NOW_TOTAL_MS));
  }

  async #deliver(
    alert: Alert,
    attempts = this.#t.attempts,
    totalMs = this.#t.retryTotalMs,
  ): Promise<DeliveryResult> {
    const { url, body } = requestFor(this.#cfg.format, this.#cfg.url, alert, this.#cfg.headers);
    const backoff: Backoff = { baseMs: this.#t.retryBaseMs, maxMs: this.#t.retryMaxMs, totalMs };
    const waits: number[] = [];
    let waited = 0;
    for (let attempt = 1; ; attempt++) {
      let retryAfterMs: number | undefined;
      let why: string;
      // Not AbortSignal.timeout inside AbortSignal.any: Node 20 may collect the timeout signal before it
      // fires (nodejs/node#57736), and a webhook that never answers then held the delivery for good.
      const deadline = timeoutSignal(this.#t.timeoutMs, this.#abort.signal);
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...this.#cfg.headers },
          body: JSON.stringify(body),
          signal: deadline.signal,
          // A redirect is not followed (the body would go elsewhere) and not retried: a 3xx is a refusal.
          redirect: 'manual',
        });
        await res.body?.cancel();
        if (res.ok) {
          this.#log.debug('alert delivered', { target: this.target, event: alert.event, attempt });
          return { ok: true, status: res.status, attempts: attempt, waits };
        }
        why = `HTTP ${res.status}`;
        const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
        if (!retryable) {
          this.#log.warn('alert refused by its webhook; not retried', {
            target: this.target,
            event: alert.event,
            status: res.status,
          });
          return { ok: false, status: res.status, attempts: attempt, waits, why };
        }
        retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
      } catch (err) {
        if (this.#abort.signal.aborted) return { ok: false, attempts: attempt, waits, why: 'closed' };
        // The error of a failed fetch may quote the URL: only its kind is logged.
        why = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      } finally {
        deadline.clear();
      }
      const wait = retryWait(attempt, backoff, retryAfterMs);
      if (attempt < attempts && waited + wait > totalMs) why += `; retries would wait over ${totalMs} ms`;
      if (attempt >= attempts || waited + wait > totalMs) {
        this.#log.warn('alert not delivered', {
          target: this.target,
          event: alert.event,
          attempts: attempt,
          why,
        });
        return { ok: false, attempts: attempt, waits, why };
      }
      waits.push(wait);
      waited += wait;
      this.#log.debug('alert delivery failed; retrying', {
        target: this.target,
        attempt,
        why,
        wait_ms: wait,
      });
      await sleep(wait, this.#abort.signal);
      if (this.#abort.signal.aborted) return { ok: false, attempts: attempt, waits, why: 'closed' };
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // longTimeout runs a due callback at once: `timer` may not be set yet when `done` runs.
    let timer: LongTimer | undefined;
    const done = () => {
      timer?.cancel();
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    timer = longTimeout(done, ms);
  });
}
