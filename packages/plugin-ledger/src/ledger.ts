import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { JobRecord, SeedGroup, SelfTestResult } from '@usepod-agent/core';
import Database from 'better-sqlite3';

/**
 * The operator's ledger (issue 18): one row per job the agent received, served, failed, cancelled or
 * refused, in a SQLite file the operator owns and may read with `sqlite3` (docs/operating.md). WAL: a
 * committed transaction survives the process being killed. Schema versions are SQLite's `user_version`;
 * a database newer than this agent knows is never rewritten.
 *
 * Every statement on the ledger's tables is in this module (issue 27): aggregates are SQL (`GROUP BY`,
 * window functions over an index), so a week of a busy provider (1.5 M rows) is summed without reading
 * the rows into JavaScript (issue 28).
 */
const MIGRATIONS: string[] = [
  // 1: jobs.
  `CREATE TABLE jobs (
     job_id          TEXT    NOT NULL,
     model           TEXT    NOT NULL,
     backend         TEXT,
     format          TEXT    NOT NULL,
     received_at     INTEGER NOT NULL,  -- epoch ms
     first_byte_ms   INTEGER,           -- after received_at
     duration_ms     INTEGER NOT NULL,
     outcome         TEXT    NOT NULL,  -- done | error | cancelled
     error_code      TEXT,              -- PROTOCOL.md 5.4
     input_tokens    INTEGER NOT NULL,
     output_tokens   INTEGER NOT NULL,
     bytes           INTEGER NOT NULL,
     input_per_1m    INTEGER,           -- advertised prices then, micro-USDC per 1M tokens
     output_per_1m   INTEGER,
     earnings_micro  REAL    NOT NULL   -- estimate: served tokens times those prices
   );
   CREATE INDEX jobs_received_at ON jobs (received_at);`,
  // 2: why a job was turned away (core's Refusal); every refusal but `malformed` is a missed job.
  `ALTER TABLE jobs ADD COLUMN refusal TEXT;`,
  // 3: every self-test ([selftest]): the speed of each model over time, to price by.
  `CREATE TABLE selftests (
     at              INTEGER NOT NULL,  -- epoch ms
     backend         TEXT    NOT NULL,
     model           TEXT    NOT NULL,
     ok              INTEGER NOT NULL,  -- 1 passed, 0 failed
     ttft_ms         REAL,              -- time to first token (passed tests only)
     tokens_per_sec  REAL,
     tokens          INTEGER,
     error           TEXT               -- why it failed (bounded engine text)
   );
   CREATE INDEX selftests_at ON selftests (at);`,
];

export const LEDGER_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Why the ledger could not be opened: `newer` is a file from a newer agent, left as it is. A plain error:
 * this module runs in the ledger's thread, where importing core for its error class cost ~27 MB of
 * resident memory (issue 30); `openLedger` makes it a coded `UsepodError` for the commands.
 */
export class LedgerOpenError extends Error {
  readonly code = 'USEPOD_LEDGER';
  readonly newer: boolean;
  constructor(message: string, newer = false, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'LedgerOpenError';
    this.newer = newer;
  }
}

const expand = (p: string) => (p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p);

/** `[ledger] path` (home expanded), else `ledger.db` beside the identity key; undefined when "off". */
export function ledgerPath(path: string | undefined, keyPath: string): string | undefined {
  if (path === 'off') return undefined;
  return path ? expand(path) : join(dirname(expand(keyPath)), 'ledger.db');
}

/** What `earnings` groups by. */
export const GROUPINGS = ['model', 'backend', 'day', 'hour'] as const;
export type Grouping = (typeof GROUPINGS)[number];

/**
 * The local time of `received_at` in SQL, as ms since the epoch shifted by the zone's offset then: the
 * offsets of [from, to] (DST changes included) as a CASE, computed here once rather than SQLite's
 * 'localtime' per row (ten times slower). Integer division of it gives local days and hours.
 */
function localSql(from: number, to: number): string {
  const offset = (t: number) => -new Date(t).getTimezoneOffset() * 60_000;
  const HOUR = 3_600_000;
  const changes: [number, number][] = [];
  let at = Math.max(0, from);
  let current = offset(at);
  const first = current;
  for (let t = at + HOUR; t <= to + HOUR; t += HOUR) {
    const o = offset(t);
    if (o === current) continue;
    // The minute it changed, between the last hour and this one.
    let [lo, hi] = [t - HOUR, t];
    while (hi - lo > 60_000) {
      const mid = Math.floor((lo + hi) / 2);
      if (offset(mid) === current) lo = mid;
      else hi = mid;
    }
    changes.push([hi, o]);
    current = o;
    at = t;
  }
  if (changes.length === 0) return `(received_at + ${first})`;
  let sql = 'CASE';
  let prev = first;
  for (const [t, o] of changes) {
    sql += ` WHEN received_at < ${t} THEN ${prev}`;
    prev = o;
  }
  return `(received_at + ${sql} ELSE ${prev} END)`;
}

/** The SQL of a row's group: days and hours in local time, as the operator reads them. */
function groupSql(by: Grouping, from: number, to: number): string {
  if (by === 'model') return 'model';
  if (by === 'backend') return "coalesce(backend, '(none)')";
  return `${localSql(from, to)} / ${by === 'day' ? 86_400_000 : 3_600_000}`;
}

/** A day or hour group's key (local ms / unit) as the operator reads it. */
function groupName(by: Grouping, key: string | number): string {
  if (typeof key === 'string') return key;
  const iso = new Date(key * (by === 'day' ? 86_400_000 : 3_600_000)).toISOString();
  return by === 'day' ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00`;
}

/** A refusal is a job missed (the operator could have earned it); `malformed` is the coordinator's fault. */
const MISSED_SQL = "(refusal IS NOT NULL AND refusal != 'malformed')";

/** One group's sums, as SQL gives them (earnings.ts makes the operator's row of it). */
export interface GroupSums {
  group: string;
  served: number;
  failed: number;
  missed: number;
  cancelled: number;
  input_tokens: number;
  output_tokens: number;
  earnings_micro: number;
  /** Time streaming (first byte to end) of served jobs, ms, and their output tokens. */
  stream_ms: number;
  streamed_tokens: number;
  /** Time with at least one of the group's jobs in flight, ms (the union of the jobs' spans). */
  busy_ms: number;
}

/** Today and the last 7 days (`status`). */
export interface Window {
  served: number;
  missed: number;
  failed: number;
  earnings_usdc: number;
}

export interface SelfTestSums {
  backend: string;
  model: string;
  tests: number;
  passed: number;
  ttft_ms_p50: number | null;
  ttft_ms_p95: number | null;
  tokens_per_sec_p50: number | null;
  last_at: number;
  last_error: string | null;
}

export class Ledger {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #insertMany: (jobs: readonly JobRecord[], tests: readonly SelfTestResult[]) => void;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    if (db.readonly) {
      this.#insertMany = () => {
        throw new Error('the ledger is open read-only');
      };
      return;
    }
    const insert = db.prepare(
      `INSERT INTO jobs (job_id, model, backend, format, received_at, first_byte_ms, duration_ms, outcome, error_code,
         input_tokens, output_tokens, bytes, input_per_1m, output_per_1m, earnings_micro, refusal)
       VALUES (@job_id, @model, @backend, @format, @received_at, @first_byte_ms, @duration_ms, @outcome, @error_code,
         @input_tokens, @output_tokens, @bytes, @input_per_1m, @output_per_1m, @earnings_micro, @refusal)`,
    );
    const insertTest = db.prepare(
      `INSERT INTO selftests (at, backend, model, ok, ttft_ms, tokens_per_sec, tokens, error)
       VALUES (@at, @backend, @model, @ok, @ttft_ms, @tokens_per_sec, @tokens, @error)`,
    );
    this.#insertMany = db.transaction((jobs: readonly JobRecord[], tests: readonly SelfTestResult[]) => {
      for (const r of jobs) insert.run(jobRow(r));
      for (const t of tests) insertTest.run(testRow(t));
    });
  }

  /**
   * Opens (creating, migrating) the ledger; `readonly` opens an existing one for queries only. Throws a
   * `LedgerOpenError` naming the file (`newer` for a file from a newer agent, which is left untouched).
   * `busyMs`: how long a write waits for another process's lock before it fails (and is retried).
   */
  static open(path: string, opts: { readonly?: boolean; busyMs?: number } = {}): Ledger {
    const readonly = opts.readonly ?? false;
    let db: Database.Database | undefined;
    try {
      if (!readonly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { readonly, fileMustExist: readonly, timeout: opts.busyMs ?? 5000 });
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > LEDGER_SCHEMA_VERSION) {
        throw new LedgerOpenError(
          `the ledger ${path} has schema version ${version}, newer than this agent knows (${LEDGER_SCHEMA_VERSION}); upgrade the agent (the file is left as it is)`,
          true,
        );
      }
      if (readonly) {
        if (version < LEDGER_SCHEMA_VERSION)
          throw new LedgerOpenError(
            `the ledger ${path} is from an older agent; run the agent once to upgrade it`,
          );
      } else {
        db.pragma('journal_mode = WAL');
        // NORMAL under WAL: a killed process loses no committed transaction (only a power cut may).
        db.pragma('synchronous = NORMAL');
        const d = db;
        d.transaction(() => {
          for (let v = version; v < MIGRATIONS.length; v++) d.exec(MIGRATIONS[v]!);
          d.pragma(`user_version = ${MIGRATIONS.length}`);
        })();
      }
      return new Ledger(path, db);
    } catch (err) {
      if (db?.open) db.close();
      if (err instanceof LedgerOpenError) throw err;
      throw new LedgerOpenError(`cannot open the ledger ${path}: ${(err as Error).message}`, false, err);
    }
  }

  /** Jobs and self-tests, in one transaction. */
  write(jobs: readonly JobRecord[], tests: readonly SelfTestResult[] = []): void {
    this.#insertMany(jobs, tests);
  }

  /** Deletes rows older than `days`; returns how many jobs. */
  prune(days: number, now = Date.now()): number {
    const before = now - days * 86_400_000;
    this.#db.prepare('DELETE FROM selftests WHERE at < ?').run(before);
    return this.#db.prepare('DELETE FROM jobs WHERE received_at < ?').run(before).changes;
  }

  /** The sums of the rows received before `before`, in the shape of the Prometheus counters (AgentMetrics.seed). */
  seedGroups(before = Number.MAX_SAFE_INTEGER): SeedGroup[] {
    const served = new Set(
      this.#db
        .prepare(
          `SELECT model FROM jobs WHERE outcome = 'done' AND received_at < ? GROUP BY model
             ORDER BY sum(earnings_micro) DESC LIMIT ?`,
        )
        .pluck()
        .all(before, SEED_MODELS) as string[],
    );
    const rows = this.#db
      .prepare(
        `SELECT outcome, error_code AS errorCode, model, backend, ${MISSED_SQL} AS missed, count(*) AS jobs,
                sum(input_tokens) AS inputTokens, sum(output_tokens) AS outputTokens, sum(bytes) AS bytes,
                sum(earnings_micro) AS earningsMicro
         FROM jobs WHERE received_at < ? GROUP BY outcome, error_code, model, backend, missed`,
      )
      .all(before) as (Omit<SeedGroup, 'model' | 'missed'> & {
      model: string;
      errorCode: string | null;
      backend: string | null;
      missed: number;
    })[];
    return rows.map((r) => ({
      ...r,
      errorCode: r.errorCode ?? undefined,
      backend: r.backend ?? undefined,
      missed: r.missed === 1,
      model: served.has(r.model) ? r.model : undefined,
    }));
  }

  /**
   * `earnings`: each group's sums since a time, in SQL; the busy time (the union of the jobs' spans) in one
   * pass over the rows in time order (the index's), keeping one state per group: bounded memory.
   */
  groups(since: number, by: Grouping, now = Date.now()): GroupSums[] {
    const oldest =
      (this.#db.prepare('SELECT min(received_at) FROM jobs WHERE received_at >= ?').pluck().get(since) as
        | number
        | null) ?? now;
    const g = groupSql(by, oldest, Math.max(oldest, now));
    const sums = this.#db
      .prepare(
        `SELECT ${g} AS "group",
           sum(outcome = 'done') AS served,
           sum(outcome = 'cancelled') AS cancelled,
           sum(outcome NOT IN ('done', 'cancelled') AND ${MISSED_SQL}) AS missed,
           sum(outcome NOT IN ('done', 'cancelled') AND NOT ${MISSED_SQL}) AS failed,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(earnings_micro) AS earnings_micro,
           coalesce(sum(CASE WHEN outcome = 'done' AND first_byte_ms IS NOT NULL AND duration_ms > first_byte_ms
                             THEN duration_ms - first_byte_ms END), 0) AS stream_ms,
           coalesce(sum(CASE WHEN outcome = 'done' AND first_byte_ms IS NOT NULL AND duration_ms > first_byte_ms
                             THEN output_tokens END), 0) AS streamed_tokens
         FROM jobs WHERE received_at >= ? GROUP BY 1`,
      )
      .all(since) as (Omit<GroupSums, 'busy_ms' | 'group'> & { group: string | number })[];
    // Sorted by start, a span adds what lies past both its start and every earlier span's end (`reach`).
    const busy = new Map<string | number, { reach: number; ms: number }>();
    const spans = this.#db
      .prepare(
        `SELECT ${g}, received_at, received_at + duration_ms FROM jobs
         WHERE received_at >= ? AND duration_ms > 0 ORDER BY received_at`,
      )
      .raw()
      .iterate(since) as IterableIterator<[string | number, number, number]>;
    for (const [key, a, b] of spans) {
      let s = busy.get(key);
      if (!s) {
        s = { reach: Number.NEGATIVE_INFINITY, ms: 0 };
        busy.set(key, s);
      }
      const from = Math.max(a, s.reach);
      if (b > from) {
        s.ms += b - from;
        s.reach = b;
      }
    }
    return sums.map((s) => ({ ...s, group: groupName(by, s.group), busy_ms: busy.get(s.group)?.ms ?? 0 }));
  }

  /** `status`: today (since `today`) and the last 7 days (since `week`), in one pass. */
  summary(today: number, week: number): { today: Window; last_7_days: Window } {
    const r = this.#db
      .prepare(
        `SELECT
           coalesce(sum(received_at >= @today AND outcome = 'done'), 0) AS ts,
           coalesce(sum(received_at >= @today AND outcome = 'error' AND ${MISSED_SQL}), 0) AS tm,
           coalesce(sum(received_at >= @today AND outcome = 'error' AND NOT ${MISSED_SQL}), 0) AS tf,
           coalesce(sum(CASE WHEN received_at >= @today THEN earnings_micro END), 0) AS te,
           coalesce(sum(received_at >= @week AND outcome = 'done'), 0) AS ws,
           coalesce(sum(received_at >= @week AND outcome = 'error' AND ${MISSED_SQL}), 0) AS wm,
           coalesce(sum(received_at >= @week AND outcome = 'error' AND NOT ${MISSED_SQL}), 0) AS wf,
           coalesce(sum(CASE WHEN received_at >= @week THEN earnings_micro END), 0) AS we
         FROM jobs WHERE received_at >= min(@today, @week)`,
      )
      .get({ today, week }) as Record<string, number>;
    const w = (p: 't' | 'w'): Window => ({
      served: r[`${p}s`]!,
      missed: r[`${p}m`]!,
      failed: r[`${p}f`]!,
      earnings_usdc: r[`${p}e`]! / 1_000_000,
    });
    return { today: w('t'), last_7_days: w('w') };
  }

  /** doctor: when the last job was served (epoch ms), if ever. */
  lastServed(): number | undefined {
    return (
      (this.#db.prepare(`SELECT max(received_at) FROM jobs WHERE outcome = 'done'`).pluck().get() as
        | number
        | null) ?? undefined
    );
  }

  /** doctor: the jobs missed since a time, by why and model, most first (at most `limit` lines). */
  missed(since: number, limit = 1000): { refusal: string; model: string; n: number }[] {
    return this.#db
      .prepare(
        `SELECT refusal, model, count(*) AS n FROM jobs WHERE received_at >= ? AND ${MISSED_SQL}
         GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?`,
      )
      .all(since, limit) as { refusal: string; model: string; n: number }[];
  }

  /** doctor: the tokens of the busiest minute since a time. */
  peakMinuteTokens(since: number): number {
    return (
      (this.#db
        .prepare(
          `SELECT max(t) FROM (SELECT sum(input_tokens + output_tokens) AS t FROM jobs WHERE received_at >= ?
           GROUP BY received_at / 60000)`,
        )
        .pluck()
        .get(since) as number | null) ?? 0
    );
  }

  /**
   * `selftest --history`: per backend and model, how often the tests passed and how fast (nearest-rank
   * percentiles over the passing ones, by window functions: no row is read into JavaScript).
   */
  selftests(since: number, model?: string): SelfTestSums[] {
    const where = `at >= @since${model === undefined ? '' : ' AND model = @model'}`;
    // Nearest rank: the ceil(p * n / 100)-th smallest, at least the first.
    const rank = (p: number) => `max(1, (${p} * n + 99) / 100)`;
    return this.#db
      .prepare(
        `WITH t AS (SELECT backend, model, ttft_ms AS v,
                      row_number() OVER (PARTITION BY backend, model ORDER BY ttft_ms) AS k,
                      count(*) OVER (PARTITION BY backend, model) AS n
                    FROM selftests WHERE ${where} AND ok = 1 AND ttft_ms IS NOT NULL),
              r AS (SELECT backend, model, tokens_per_sec AS v,
                      row_number() OVER (PARTITION BY backend, model ORDER BY tokens_per_sec) AS k,
                      count(*) OVER (PARTITION BY backend, model) AS n
                    FROM selftests WHERE ${where} AND ok = 1 AND tokens_per_sec IS NOT NULL),
              a AS (SELECT backend, model, count(*) AS tests, coalesce(sum(ok), 0) AS passed, max(at) AS last_at
                    FROM selftests WHERE ${where} GROUP BY backend, model)
         SELECT a.backend, a.model, a.tests, a.passed, a.last_at,
           (SELECT v FROM t WHERE t.backend = a.backend AND t.model = a.model AND k = ${rank(50)}) AS ttft_ms_p50,
           (SELECT v FROM t WHERE t.backend = a.backend AND t.model = a.model AND k = ${rank(95)}) AS ttft_ms_p95,
           (SELECT v FROM r WHERE r.backend = a.backend AND r.model = a.model AND k = ${rank(50)}) AS tokens_per_sec_p50,
           (SELECT error FROM selftests f WHERE f.backend = a.backend AND f.model = a.model AND f.ok = 0 AND f.at >= @since
              ORDER BY f.at DESC LIMIT 1) AS last_error
         FROM a ORDER BY a.model, a.backend`,
      )
      .all({ since, ...(model === undefined ? {} : { model }) }) as SelfTestSums[];
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

function jobRow(r: JobRecord) {
  const earnings =
    r.outcome === 'done' && r.inputPer1m !== undefined && r.outputPer1m !== undefined
      ? (r.inputTokens * r.inputPer1m + r.outputTokens * r.outputPer1m) / 1_000_000
      : 0;
  return {
    job_id: r.jobId,
    model: r.model,
    backend: r.backend ?? null,
    format: r.format,
    received_at: Math.round(r.receivedAt),
    first_byte_ms: r.firstByteMs ?? null,
    duration_ms: r.durationMs,
    outcome: r.outcome,
    error_code: r.errorCode ?? null,
    input_tokens: r.inputTokens,
    output_tokens: r.outputTokens,
    bytes: r.bytes,
    input_per_1m: r.inputPer1m ?? null,
    output_per_1m: r.outputPer1m ?? null,
    earnings_micro: earnings,
    refusal: r.refusal ?? null,
  };
}

/** One self-test as it happened: a failure keeps no figures (the result carries the last good ones). */
function testRow(r: SelfTestResult) {
  return {
    at: Date.parse(r.at),
    backend: r.backend,
    model: r.model,
    ok: r.ok ? 1 : 0,
    ttft_ms: r.ok ? (r.ttftMs ?? null) : null,
    tokens_per_sec: r.ok ? (r.tokensPerSecond ?? null) : null,
    tokens: r.ok ? (r.tokens ?? null) : null,
    error: r.ok ? null : (r.error ?? null),
  };
}

/** Models kept as their own label when counters resume; the rest are `other` (metric cardinality). */
const SEED_MODELS = 100;
