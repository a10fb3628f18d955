import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * The ledger's thread (worker.ts beside this module): compiled (dist/worker.js), else the source (the
 * repository's tests) loaded through tsx, which a worker's `execArgv` cannot do on Node 20.
 */
export function newWorker(workerData: unknown): Worker {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const ts = JSON.stringify(new URL('./worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${ts}); });`, {
    eval: true,
    workerData,
  });
}

/**
 * A read-only ledger thread for the dashboard's charts: ask it `{ id, op: 'series', now }`, it answers a
 * `WorkerReply` whose value is a `LedgerSeries`. The same core-free module as the writer's thread
 * (decision 0008: the dashboard's own thread loaded all of core again, ~37 MB while a page was open).
 */
export function ledgerReader(path: string): Worker {
  return newWorker({ path, busyMs: 5_000, readonly: true });
}
