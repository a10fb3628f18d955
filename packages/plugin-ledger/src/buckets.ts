import type { JobRecord } from '@usepod-agent/core';
import type Database from 'better-sqlite3';

/**
 * The ledger's quarter-hour summaries (issue 28: `earnings` and `status` on 1.5 M rows in well under a
 * second). Two tables, written in the same transaction as the rows they sum, so they never disagree:
 *
 * - `job_sums`: per quarter hour of `received_at`, model and backend, the counts, tokens, earnings and
 *   streaming time of its jobs (and the energy, issue 31, added when it arrives).
 * - `busy`: per quarter hour of wall time and key (`*` every job, `m:<model>`, `b:<backend>`), the exact
 *   spans in which at least one such job was in flight, clipped to that quarter hour, and their length.
 *   A union of spans is the sum of its parts in disjoint windows, so a window's busy time is a sum of
 *   quarter hours, exact, and a window starting mid-quarter clips the stored spans.
 *
 * A quarter hour is a whole part of a local hour and day in every time zone (offsets are multiples of
 * 15 minutes), so `--by hour` and `--by day` group quarter hours without reading rows.
 */
export const BUCKET_MS = 900_000;

/**
 * The most separate busy spans kept per quarter hour and key (a job every 0.4 s with idle gaps between
 * them); past it the shortest gap is counted busy, so a blob and each write stay small.
 */
export const MAX_SPANS = 2048;

export const BUCKET_SCHEMA = `
  CREATE TABLE job_sums (
    bucket          INTEGER NOT NULL,  -- received_at / 900000 (a quarter hour since the epoch)
    model           TEXT    NOT NULL,
    backend         TEXT    NOT NULL,  -- '' for none
    served          INTEGER NOT NULL DEFAULT 0,
    cancelled       INTEGER NOT NULL DEFAULT 0,
    missed          INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    earnings_micro  REAL    NOT NULL DEFAULT 0,
    stream_ms       INTEGER NOT NULL DEFAULT 0,
    streamed_tokens INTEGER NOT NULL DEFAULT 0,
    energy_wh       REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, model, backend)
  ) WITHOUT ROWID;
  CREATE TABLE busy (
    bucket          INTEGER NOT NULL,  -- a quarter hour of wall time
    key             TEXT    NOT NULL,  -- '*', 'm:' || model, 'b:' || backend
    ms              INTEGER NOT NULL,  -- length of the spans
    spans           BLOB    NOT NULL,  -- int32 LE pairs [start, end) in ms from the quarter hour's start
    PRIMARY KEY (bucket, key)
  ) WITHOUT ROWID;`;

/** A refusal is a job missed (the operator could have earned it); `malformed` is the coordinator's fault. */
export const MISSED_SQL = "(refusal IS NOT NULL AND refusal != 'malformed')";

/** The `job_sums` columns a row adds to, as SQL over `jobs` (the backfill) . */
/** A `jobs` group's sums, in `job_sums`' column order (after its keys): the ledger sums rows the same way. */
export const SUM_SQL = `
  sum(outcome = 'done'), sum(outcome = 'cancelled'),
  sum(outcome NOT IN ('done', 'cancelled') AND ${MISSED_SQL}),
  sum(outcome NOT IN ('done', 'cancelled') AND NOT ${MISSED_SQL}),
  sum(input_tokens), sum(output_tokens), sum(earnings_micro),
  coalesce(sum(CASE WHEN outcome = 'done' AND first_byte_ms IS NOT NULL AND duration_ms > first_byte_ms
                    THEN duration_ms - first_byte_ms END), 0),
  coalesce(sum(CASE WHEN outcome = 'done' AND first_byte_ms IS NOT NULL AND duration_ms > first_byte_ms
                    THEN output_tokens END), 0),
  coalesce(sum(energy_wh), 0)`;

export const bucketOf = (t: number) => Math.floor(t / BUCKET_MS);

/** Spans as stored: int32 little-endian pairs. */
export function decodeSpans(blob: Buffer): number[] {
  const out: number[] = new Array(blob.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = blob.readInt32LE(i * 4);
  return out;
}

function encodeSpans(spans: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(spans.length * 4);
  for (let i = 0; i < spans.length; i++) b.writeInt32LE(spans[i]!, i * 4);
  return b;
}

/** Adds [a, b) to sorted disjoint spans (flat [start, end, ...]), merging what touches it. */
export function addSpan(spans: number[], a: number, b: number): number[] {
  const out: number[] = [];
  let i = 0;
  for (; i < spans.length && spans[i + 1]! < a; i += 2) out.push(spans[i]!, spans[i + 1]!);
  let [s, e] = [a, b];
  for (; i < spans.length && spans[i]! <= e; i += 2) {
    s = Math.min(s, spans[i]!);
    e = Math.max(e, spans[i + 1]!);
  }
  out.push(s, e);
  for (; i < spans.length; i++) out.push(spans[i]!);
  if (out.length > MAX_SPANS * 2) {
    // Fill the shortest gap: the busy time grows by that gap at most.
    let k = 1;
    for (let j = 3; j < out.length - 1; j += 2) if (out[j + 1]! - out[j]! < out[k + 1]! - out[k]!) k = j;
    out.splice(k, 2);
  }
  return out;
}

export function spansMs(spans: readonly number[], from = 0, to = BUCKET_MS): number {
  let ms = 0;
  for (let i = 0; i < spans.length; i += 2) {
    const a = Math.max(from, spans[i]!);
    const b = Math.min(to, spans[i + 1]!);
    if (b > a) ms += b - a;
  }
  return ms;
}

/**
 * The busy spans being changed in one transaction: read once per quarter hour and key, written at
 * `flush`. Bounded: the backfill flushes the quarter hours no later row can reach.
 */
export class BusySpans {
  readonly #get: Database.Statement;
  readonly #put: Database.Statement;
  readonly #open = new Map<string, { bucket: number; key: string; spans: number[] }>();

  constructor(db: Database.Database) {
    this.#get = db.prepare('SELECT spans FROM busy WHERE bucket = ? AND key = ?').pluck();
    this.#put = db.prepare('INSERT OR REPLACE INTO busy (bucket, key, ms, spans) VALUES (?, ?, ?, ?)');
  }

  /** A job in flight from `a` to `b` (ms), for each key it counts under. */
  add(keys: readonly string[], a: number, b: number): void {
    if (!(b > a)) return;
    for (let q = bucketOf(a); q * BUCKET_MS < b; q++) {
      const start = q * BUCKET_MS;
      const from = Math.max(a, start) - start;
      const to = Math.min(b, start + BUCKET_MS) - start;
      for (const key of keys) {
        const id = `${q}\u0000${key}`;
        let o = this.#open.get(id);
        if (!o) {
          const blob = this.#get.get(q, key) as Buffer | undefined;
          o = { bucket: q, key, spans: blob ? decodeSpans(blob) : [] };
          this.#open.set(id, o);
        }
        o.spans = addSpan(o.spans, from, to);
      }
    }
  }

  /** Writes the quarter hours before `before` (all by default) and forgets them. */
  flush(before = Number.POSITIVE_INFINITY): void {
    for (const [id, o] of this.#open) {
      if (o.bucket >= before) continue;
      this.#put.run(o.bucket, o.key, spansMs(o.spans), encodeSpans(o.spans));
      this.#open.delete(id);
    }
  }
}

/** The keys a job's busy time counts under. */
export const busyKeys = (model: string, backend: string | undefined) => [
  '*',
  `m:${model}`,
  `b:${backend ?? '(none)'}`,
];

/** Adds one job (as the ledger's row holds it) to `job_sums`. */
export function sumsWriter(db: Database.Database): (r: JobRow) => void {
  const upsert = db.prepare(
    `INSERT INTO job_sums (bucket, model, backend, served, cancelled, missed, failed, input_tokens, output_tokens,
       earnings_micro, stream_ms, streamed_tokens)
     VALUES (@bucket, @model, @backend, @served, @cancelled, @missed, @failed, @input_tokens, @output_tokens,
       @earnings_micro, @stream_ms, @streamed_tokens)
     ON CONFLICT (bucket, model, backend) DO UPDATE SET
       served = served + excluded.served, cancelled = cancelled + excluded.cancelled,
       missed = missed + excluded.missed, failed = failed + excluded.failed,
       input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
       earnings_micro = earnings_micro + excluded.earnings_micro, stream_ms = stream_ms + excluded.stream_ms,
       streamed_tokens = streamed_tokens + excluded.streamed_tokens`,
  );
  return (r) => {
    const done = r.outcome === 'done';
    const err = !done && r.outcome !== 'cancelled';
    const missed = err && r.refusal !== null && r.refusal !== 'malformed';
    const streams = done && r.first_byte_ms !== null && r.duration_ms > r.first_byte_ms;
    upsert.run({
      bucket: bucketOf(r.received_at),
      model: r.model,
      backend: r.backend ?? '',
      served: done ? 1 : 0,
      cancelled: r.outcome === 'cancelled' ? 1 : 0,
      missed: missed ? 1 : 0,
      failed: err && !missed ? 1 : 0,
      input_tokens: r.input_tokens,
      output_tokens: r.output_tokens,
      earnings_micro: r.earnings_micro,
      stream_ms: streams ? r.duration_ms - r.first_byte_ms! : 0,
      streamed_tokens: streams ? r.output_tokens : 0,
    });
  };
}

/** A job as the `jobs` table holds it. */
export interface JobRow {
  model: string;
  backend: string | null;
  received_at: number;
  first_byte_ms: number | null;
  duration_ms: number;
  outcome: JobRecord['outcome'];
  input_tokens: number;
  output_tokens: number;
  earnings_micro: number;
  refusal: string | null;
}

/**
 * Migration 4's backfill: the summaries of the rows an older agent wrote, once. The sums are one
 * `GROUP BY`; the busy spans one pass over the rows in time order, a page at a time (a statement
 * cannot write while another reads), flushing the quarter hours no later row reaches.
 */
export function backfill(db: Database.Database): void {
  db.exec(
    `INSERT INTO job_sums SELECT received_at / ${BUCKET_MS}, model, coalesce(backend, ''), ${SUM_SQL}
     FROM jobs GROUP BY 1, 2, 3`,
  );
  const busy = new BusySpans(db);
  const page = db.prepare(
    `SELECT rowid, model, backend, received_at, duration_ms FROM jobs
     WHERE duration_ms > 0 AND (received_at, rowid) > (?, ?) ORDER BY received_at, rowid LIMIT 20000`,
  );
  let after: [number, number] = [Number.MIN_SAFE_INTEGER, 0];
  for (;;) {
    const rows = page.all(...after) as {
      rowid: number;
      model: string;
      backend: string | null;
      received_at: number;
      duration_ms: number;
    }[];
    if (rows.length === 0) break;
    for (const r of rows)
      busy.add(busyKeys(r.model, r.backend ?? undefined), r.received_at, r.received_at + r.duration_ms);
    const last = rows.at(-1)!;
    after = [last.received_at, last.rowid];
    busy.flush(bucketOf(last.received_at));
  }
  busy.flush();
}
