import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type Config, engineText } from '@usepod-agent/core';
import type { EarningsReply, EarningsSeries } from './earnings-worker.js';

export type { EarningsSeries };

/** Series are summed again at most this often: a page open all day costs one query a half-minute. */
const FRESH_MS = 30_000;
/** A query slower than this is abandoned (the thread is ended and made again on the next ask). */
const QUERY_MS = 20_000;
/** The thread ends after this long without an ask: no page open, no thread. */
const IDLE_MS = 120_000;

/** The worker's module beside this one: compiled, else the source (the repository's tests) through tsx. */
function newWorker(workerData: unknown): Worker {
  const js = new URL('./earnings-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const ts = JSON.stringify(new URL('./earnings-worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${ts}); });`, {
    eval: true,
    workerData,
  });
}

/**
 * The earnings the page charts, from the ledger file (read-only, on a worker thread), cached a half
 * minute; after a job ends the next ask sums again. Undefined path: the ledger is off.
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

  constructor(path: string | undefined, config: Readonly<Config>) {
    this.#path = path;
    // Plain data for the thread: the config is frozen, and structured clone copies it.
    this.#config = JSON.parse(JSON.stringify(config)) as Config;
  }

  /** A job ended: the next ask reads the ledger again (still at most once per FRESH_MS / 10). */
  touch(): void {
    this.#stale = true;
  }

  async read(now = Date.now()): Promise<EarningsSeries | { error: string }> {
    const path = this.#path;
    if (!path) return { error: 'the ledger is off ([ledger] path = "off")' };
    if (!existsSync(path)) return { error: 'no ledger yet: it is written as jobs arrive' };
    const c = this.#cached;
    const age = c ? now - c.at : Number.POSITIVE_INFINITY;
    if (c && (age < FRESH_MS / 10 || (!this.#stale && age < FRESH_MS))) return c.value;
    this.#pending ??= this.#query(path, now).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #query(path: string, now: number): Promise<EarningsSeries | { error: string }> {
    this.#stale = false;
    if (!this.#worker) {
      this.#worker = newWorker({ path, config: this.#config });
      this.#worker.unref();
    }
    const w = this.#worker;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => void this.close(), IDLE_MS);
    this.#idle.unref();
    const id = this.#next++;
    const value = await new Promise<EarningsSeries | { error: string }>((resolve) => {
      const timer = setTimeout(() => {
        cleanup();
        void this.close();
        resolve({ error: `the ledger did not answer in ${QUERY_MS / 1000} s` });
      }, QUERY_MS);
      const onMessage = (m: EarningsReply) => {
        if (m.id !== id) return;
        cleanup();
        resolve(m.ok ? m.value : { error: engineText(m.error, 300) });
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
      w.postMessage({ id, now });
    });
    this.#cached = { at: now, value };
    return value;
  }

  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const w = this.#worker;
    this.#worker = undefined;
    await w?.terminate();
  }
}
