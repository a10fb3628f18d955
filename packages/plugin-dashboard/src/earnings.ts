import { statSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { type Config, engineText } from '@usepod-agent/core';
import {
  type LedgerReply,
  type LedgerRequest,
  type LedgerSeries,
  ledgerReader,
  missedChecks,
} from '@usepod-agent/plugin-ledger';

/** What the page charts: the ledger's series, the missed jobs as doctor's lines with their fixes. */
export interface EarningsSeries extends Omit<LedgerSeries, 'missed'> {
  missed: { name: string; level: string; detail: string; fix: string | null }[];
}

/** Series are summed again at most this often: a page open all day costs one query a half-minute. */
const FRESH_MS = 30_000;
/** A query slower than this is abandoned (the thread is ended and made again on the next ask). */
const QUERY_MS = 20_000;
/** The thread ends after this long without an ask: no page open, no thread. */
const IDLE_MS = 120_000;

/**
 * The earnings the page charts, from the ledger file, summed by the ledger package's own read-only
 * thread (`ledgerReader`: core-free, so a page open costs the thread and SQLite, not a second core),
 * cached a half minute; after a job ends the next ask sums again. Undefined path: the ledger is off.
 */
export class EarningsReader {
  readonly #path: string | undefined;
  readonly #config: Readonly<Config>;
  #worker: Worker | undefined;
  #idle: NodeJS.Timeout | undefined;
  #next = 1;
  #cached: { at: number; value: EarningsSeries | { error: string } } | undefined;
  #pending: Promise<EarningsSeries | { error: string }> | undefined;
  #stale = false;
  #closed = false;

  constructor(path: string | undefined, config: Readonly<Config>) {
    this.#path = path;
    this.#config = config;
  }

  /** A job ended: the next ask reads the ledger again (still at most once per FRESH_MS / 10). */
  touch(): void {
    this.#stale = true;
  }

  async read(now = Date.now()): Promise<EarningsSeries | { error: string }> {
    const path = this.#path;
    if (!path) return { error: 'the ledger is off ([ledger] path = "off")' };
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) return { error: 'no ledger yet: it is written as jobs arrive' };
    // A FIFO or device would hold the thread in open() for good: terminate() cannot end a system call.
    if (!st.isFile()) return { error: `the ledger ${path} is not a regular file` };
    const c = this.#cached;
    const age = c ? now - c.at : Number.POSITIVE_INFINITY;
    if (c && !this.#stale && age < FRESH_MS) return c.value;
    // A job ended since the last sums: summed again, at most every FRESH_MS / 10 (a busy agent ends jobs
    // all the time). The ask waits for that rather than answer without the job: the page asks once per
    // ended job, then only every 10 s (it showed a job's earnings up to 10 s late).
    const wait = c ? Math.max(0, FRESH_MS / 10 - age) : 0;
    this.#pending ??= (wait > 0 ? delay(wait, undefined, { ref: false }) : Promise.resolve())
      .then(() => (this.#closed ? { error: 'the agent is stopping' } : this.#query(path, now + wait)))
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  async #query(path: string, now: number): Promise<EarningsSeries | { error: string }> {
    this.#stale = false;
    if (!this.#worker) {
      this.#worker = ledgerReader(path);
      this.#worker.unref();
    }
    const w = this.#worker;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => void this.#endThread(), IDLE_MS);
    this.#idle.unref();
    const id = this.#next++;
    const value = await new Promise<EarningsSeries | { error: string }>((resolve) => {
      const timer = setTimeout(() => {
        cleanup();
        void this.#endThread();
        resolve({ error: `the ledger did not answer in ${QUERY_MS / 1000} s` });
      }, QUERY_MS);
      const onMessage = (m: LedgerReply) => {
        if (m.id !== id) return;
        cleanup();
        resolve(m.ok ? this.#page(m.value as LedgerSeries) : { error: engineText(m.error, 300) });
      };
      const onError = (err: Error) => {
        cleanup();
        this.#worker = undefined;
        resolve({ error: engineText(err.message, 300) });
      };
      const cleanup = () => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('error', onError);
      };
      w.on('message', onMessage);
      w.once('error', onError);
      w.postMessage({ id, op: 'series', now } satisfies LedgerRequest);
    });
    this.#cached = { at: now, value };
    return value;
  }

  /** The missed jobs as doctor says them (with the engines' capacity unknown here). */
  #page(s: LedgerSeries): EarningsSeries {
    const missed = missedChecks(s.missed, this.#config, { engineCapacity: undefined }).map((c) => ({
      name: c.name,
      level: c.level,
      detail: c.detail,
      fix: c.fix ?? null,
    }));
    return { ...s, missed };
  }

  /** The agent stops: no more sums. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#endThread();
  }

  async #endThread(): Promise<void> {
    clearTimeout(this.#idle);
    const w = this.#worker;
    this.#worker = undefined;
    await w?.terminate();
  }
}
