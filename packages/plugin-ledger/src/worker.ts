import { parentPort, workerData } from 'node:worker_threads';
import type { JobRecord, SelfTestResult } from '@usepod-agent/core';
import { type EnergyRecords, Ledger, LedgerOpenError } from './ledger.js';
import { ledgerSeries } from './series.js';

/**
 * The ledger's own thread (issue 28): it owns the read-write connection, so a lock held by another
 * process (a backup, `sqlite3` open, a VACUUM) or a slow disk waits here, never on the event loop that
 * relays the streams. It answers each request in order; an error is an answer, never a crash.
 * `readonly` (the dashboard's reader, `ledgerReader`): only `series`, each on a read-only connection of
 * its own, so a month's sums never hold up the writer's commits (jobs' terminal frames wait on those).
 */
export interface WorkerRequest {
  id: number;
  op: 'open' | 'write' | 'totals' | 'summary' | 'prune' | 'series' | 'close';
  jobs?: JobRecord[];
  tests?: SelfTestResult[];
  energy?: EnergyRecords;
  before?: number;
  today?: number;
  week?: number;
  days?: number;
  now?: number;
}
export type WorkerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string; code: string | undefined; newer: boolean };

const { path, busyMs, maxPages, readonly } = workerData as {
  path: string;
  busyMs: number;
  maxPages?: number;
  readonly?: boolean;
};
let ledger: Ledger | undefined;

/** Opened at the first request and again after a failure: the file may be fixed meanwhile. */
const open = () => {
  if (readonly) throw new Error('this ledger thread only reads');
  ledger ??= Ledger.open(path, { busyMs, ...(maxPages === undefined ? {} : { maxPages }) });
  return ledger;
};

function handle(m: WorkerRequest): unknown {
  switch (m.op) {
    case 'open':
      // A job started: its record will find the file open.
      open();
      return undefined;
    case 'write':
      return open().write(m.jobs ?? [], m.tests ?? [], m.energy ?? {});
    case 'totals':
      return open().seedGroups(m.before);
    case 'summary': {
      const l = open();
      return { ...l.summary(m.today!, m.week!), oldest: l.oldestSince(m.week!) };
    }
    case 'prune':
      return open().prune(m.days!);
    case 'series': {
      // Opened for each ask: a file replaced or restored meanwhile is read as it is now.
      const reader = Ledger.open(path, { readonly: true });
      try {
        return ledgerSeries(reader, m.now!);
      } finally {
        reader.close();
      }
    }
    case 'close':
      ledger?.close();
      ledger = undefined;
      return undefined;
  }
}

parentPort!.on('message', (m: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { id: m.id, ok: true, value: handle(m) };
  } catch (err) {
    const e = err as Error & { code?: unknown; cause?: { code?: unknown } };
    // SQLite's own code (SQLITE_BUSY, SQLITE_FULL...) says more than USEPOD_LEDGER.
    const code = e.cause?.code ?? e.code;
    reply = {
      id: m.id,
      ok: false,
      error: e.message,
      code: typeof code === 'string' ? code : undefined,
      newer: err instanceof LedgerOpenError && err.newer,
    };
  }
  parentPort!.postMessage(reply);
});
