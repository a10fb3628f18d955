import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { JobRecord, SeedGroup, SelfTestResult } from '@usepod-agent/core';
import Database from 'better-sqlite3';
import {
  BUCKET_MS,
  BUCKET_SCHEMA,
  BusySpans,
  backfill,
  bucketOf,
  busyKeys,
  decodeSpans,
  MISSED_SQL,
  SUM_SQL,
  spansMs,
  sumsWriter,
} from './buckets.js';

/**
 * The operator's ledger (issue 18): one row per job the agent received, served, failed, cancelled or
 * refused, in a SQLite file the operator owns and may read with `sqlite3` (docs/operating.md). WAL: a
 * committed transaction survives the process being killed. Schema versions are SQLite's `user_version`;
 * a database newer than this agent knows is never rewritten.
 *
 * Every statement on the ledger's tables is in this module and buckets.ts (issue 27): `earnings` and
 * `status` read quarter-hour summaries kept in the same transaction as the rows (buckets.ts), and the
 * rows themselves only for the part of a window before its first whole quarter hour (issue 28: a week
 * of a busy provider, 1.5 M rows, in milliseconds). A migration is SQL, or a function for a backfill.
 */
const MIGRATIONS: (string | ((db: Database.Database) => void))[] = [
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
  // 4: quarter-hour summaries (issue 28), backfilled from the rows once; energy per job and per quarter
  // hour, serving and idle (issue 31).
  (db) => {
    db.exec(`ALTER TABLE jobs ADD COLUMN energy_wh REAL;
      ${BUCKET_SCHEMA}
      CREATE TABLE energy (
        bucket     INTEGER PRIMARY KEY,  -- a quarter hour, as in job_sums
        serving_wh REAL NOT NULL DEFAULT 0,
        idle_wh    REAL NOT NULL DEFAULT 0
      );`);
    backfill(db);
  },
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
 * A time column (`col`, epoch ms) as local time in SQL, ms since the epoch shifted by the zone's offset
 * then: the offsets of [from, to] (DST changes included) as a CASE, computed here once rather than
 * SQLite's 'localtime' per row (ten times slower). Integer division of it gives local days and hours.
 */
function localSql(col: string, from: number, to: number): string {
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
  if (changes.length === 0) return `(${col} + ${first})`;
  let sql = 'CASE';
  let prev = first;
  for (const [t, o] of changes) {
    sql += ` WHEN ${col} < ${t} THEN ${prev}`;
    prev = o;
  }
  return `(${col} + ${sql} ELSE ${prev} END)`;
}

/**
 * The SQL of a group: days and hours in local time, as the operator reads them, of `col` (a row's
 * `received_at`, a quarter hour's start).
 */
function groupSql(by: Grouping, col: string, from: number, to: number): string {
  if (by === 'model') return 'model';
  if (by === 'backend') return "coalesce(nullif(backend, ''), '(none)')";
  return `${localSql(col, from, to)} / ${by === 'day' ? 86_400_000 : 3_600_000}`;
}

/** A day or hour group's key (local ms / unit) as the operator reads it. */
function groupName(by: Grouping, key: string | number): string {
  if (typeof key === 'string') return key;
  const iso = new Date(key * (by === 'day' ? 86_400_000 : 3_600_000)).toISOString();
  return by === 'day' ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00`;
}

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
  /**
   * Time since `since` with at least one of the group's jobs in flight, ms (the union of the jobs' spans;
   * for a day or an hour, within it).
   */
  busy_ms: number;
  /** The energy of the group's jobs that the GPU plugin measured, Wh (issue 31). */
  energy_wh: number;
}

/** The groups a cut list leaves out (`Ledger.groups`' `top`): how many, and their sums. */
export interface RestSums extends Omit<GroupSums, 'group' | 'busy_ms'> {
  groups: number;
}

/** Energy the GPU plugin measured (issue 31): jobs' (each once it is known) and the GPUs' per poll. */
export interface EnergyRecords {
  jobs?: readonly { jobId: string; receivedAt: number; wh: number }[];
  periods?: readonly EnergyPeriod[];
}

export interface EnergyPeriod {
  /** Epoch ms, from < to. */
  from: number;
  to: number;
  servingWh: number;
  idleWh: number;
}

/**
 * Jobs missed (refused) since a time, by reason and model: `model` null for the models past the most
 * missed few of that reason, summed (`models` of them).
 */
export interface MissedRow {
  refusal: string;
  model: string | null;
  n: number;
  models: number;
}

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
  readonly #insertMany: (
    jobs: readonly JobRecord[],
    tests: readonly SelfTestResult[],
    energy: EnergyRecords,
  ) => void;

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
    const sum = sumsWriter(db);
    const jobOf = db.prepare(
      'SELECT rowid, model, backend, energy_wh FROM jobs WHERE received_at = ? AND job_id = ? LIMIT 1',
    );
    const setEnergy = db.prepare('UPDATE jobs SET energy_wh = ? WHERE rowid = ?');
    const addEnergy = db.prepare(
      'UPDATE job_sums SET energy_wh = energy_wh + ? WHERE bucket = ? AND model = ? AND backend = ?',
    );
    const addPeriod = db.prepare(
      `INSERT INTO energy (bucket, serving_wh, idle_wh) VALUES (?, ?, ?)
       ON CONFLICT (bucket) DO UPDATE SET serving_wh = serving_wh + excluded.serving_wh,
         idle_wh = idle_wh + excluded.idle_wh`,
    );
    this.#insertMany = db.transaction(
      (jobs: readonly JobRecord[], tests: readonly SelfTestResult[], energy) => {
        // The quarter-hour summaries in the same transaction as the rows: they never disagree.
        const busy = new BusySpans(db);
        for (const r of jobs) {
          const row = jobRow(r);
          insert.run(row);
          sum(row);
          busy.add(busyKeys(row.model, r.backend), row.received_at, row.received_at + row.duration_ms);
        }
        busy.flush();
        for (const t of tests) insertTest.run(testRow(t));
        // A job's energy comes after its row (the GPU plugin tells it a poll or two after the job ended).
        for (const e of energy.jobs ?? []) {
          const at = Math.round(e.receivedAt);
          const j = jobOf.get(at, e.jobId) as
            | { rowid: number; model: string; backend: string | null; energy_wh: number | null }
            | undefined;
          if (!j) continue;
          setEnergy.run(e.wh, j.rowid);
          addEnergy.run(e.wh - (j.energy_wh ?? 0), bucketOf(at), j.model, j.backend ?? '');
        }
        // The GPUs' energy between two polls, spread over the quarter hours it spans.
        for (const p of energy.periods ?? []) {
          const span = p.to - p.from;
          for (let q = bucketOf(p.from); q * BUCKET_MS < p.to; q++) {
            const part = (Math.min(p.to, (q + 1) * BUCKET_MS) - Math.max(p.from, q * BUCKET_MS)) / span;
            addPeriod.run(q, p.servingWh * part, p.idleWh * part);
          }
        }
      },
    );
  }

  /**
   * Opens (creating, migrating) the ledger; `readonly` opens an existing one for queries only. Throws a
   * `LedgerOpenError` naming the file (`newer` for a file from a newer agent, which is left untouched).
   * `busyMs`: how long a write waits for another process's lock before it fails (and is retried);
   * `maxPages`: the most pages the file may have (SQLite's `max_page_count`).
   */
  static open(path: string, opts: { readonly?: boolean; busyMs?: number; maxPages?: number } = {}): Ledger {
    const readonly = opts.readonly ?? false;
    let db: Database.Database | undefined;
    try {
      if (!readonly) {
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        createPrivate(path);
      }
      refuseNonFiles(path);
      db = new Database(path, { readonly, fileMustExist: readonly, timeout: opts.busyMs ?? 5000 });
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > LEDGER_SCHEMA_VERSION) {
        throw new LedgerOpenError(
          `the ledger ${path} has schema version ${version}, newer than this agent knows (${LEDGER_SCHEMA_VERSION}); upgrade the agent (the file is left as it is)`,
          true,
        );
      }
      if (readonly) {
        // Made by the agent, never written: its first write failed (a full disk). No older agent's.
        if (version === 0 && isEmpty(db))
          throw new LedgerOpenError(
            `the ledger ${path} holds nothing yet: the agent made it but could not write it (a full disk? its log says why)`,
          );
        if (version < LEDGER_SCHEMA_VERSION)
          throw new LedgerOpenError(
            `the ledger ${path} is from an older agent; run the agent once to upgrade it`,
          );
      } else {
        db.pragma('journal_mode = WAL');
        // NORMAL under WAL: a killed process loses no committed transaction (only a power cut may).
        db.pragma('synchronous = NORMAL');
        // A cap on the file (embedders, tests): past it a write fails SQLITE_FULL as on a full disk.
        if (opts.maxPages !== undefined)
          db.pragma(`max_page_count = ${Math.max(1, Math.floor(opts.maxPages))}`);
        const d = db;
        // Only when there is something to migrate: a write here needs the lock, and a file another
        // process holds locked (a backup, `sqlite3` mid-transaction) then failed every read too.
        if (version < MIGRATIONS.length)
          d.transaction(() => {
            for (let v = version; v < MIGRATIONS.length; v++) {
              const m = MIGRATIONS[v]!;
              if (typeof m === 'string') d.exec(m);
              else m(d);
            }
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

  /** Jobs, self-tests and energy, in one transaction. */
  write(jobs: readonly JobRecord[], tests: readonly SelfTestResult[] = [], energy: EnergyRecords = {}): void {
    this.#insertMany(jobs, tests, energy);
  }

  /**
   * Deletes rows older than `days` (from the start of a quarter hour, so the summaries lose exactly what
   * the rows lose); returns how many jobs. Counted back from the newest row when that is earlier than
   * `now`: a clock set years ahead at boot (a flat RTC battery, put back by NTP later) must not delete
   * the history.
   */
  prune(days: number, now = Date.now()): number {
    const db = this.#db;
    const newest = db
      .prepare(
        'SELECT max(coalesce((SELECT max(received_at) FROM jobs), 0), coalesce((SELECT max(at) FROM selftests), 0))',
      )
      .pluck()
      .get() as number;
    const q = bucketOf(Math.min(now, newest > 0 ? newest : now) - days * 86_400_000);
    return db.transaction(() => {
      db.prepare('DELETE FROM selftests WHERE at < ?').run(q * BUCKET_MS);
      db.prepare('DELETE FROM job_sums WHERE bucket < ?').run(q);
      db.prepare('DELETE FROM busy WHERE bucket < ?').run(q);
      db.prepare('DELETE FROM energy WHERE bucket < ?').run(q);
      return db.prepare('DELETE FROM jobs WHERE received_at < ?').run(q * BUCKET_MS).changes;
    })();
  }

  /** The sums of the rows received before `before`, in the shape of the Prometheus counters (AgentMetrics.seed). */
  seedGroups(before = Number.MAX_SAFE_INTEGER): SeedGroup[] {
    // Grouped with every model but the top earners as one (NULL: `other`), in SQL: the model ids of
    // refused jobs are the coordinator's, and a row per id (500,000 made 360 MB) went to the counters.
    const rows = this.#db
      .prepare(
        `WITH top AS (SELECT model FROM jobs WHERE outcome = 'done' AND received_at < @before GROUP BY model
                      ORDER BY sum(earnings_micro) DESC LIMIT @n)
         SELECT outcome, error_code AS errorCode, CASE WHEN model IN top THEN model END AS label, backend,
                ${MISSED_SQL} AS missed, count(*) AS jobs, sum(input_tokens) AS inputTokens,
                sum(output_tokens) AS outputTokens, sum(bytes) AS bytes, sum(earnings_micro) AS earningsMicro
         FROM jobs WHERE received_at < @before GROUP BY outcome, error_code, label, backend, missed`,
      )
      .all({ before, n: SEED_MODELS }) as (Omit<SeedGroup, 'model' | 'missed'> & {
      label: string | null;
      errorCode: string | null;
      backend: string | null;
      missed: number;
    })[];
    return rows.map(({ label, ...r }) => ({
      ...r,
      errorCode: r.errorCode ?? undefined,
      backend: r.backend ?? undefined,
      missed: r.missed === 1,
      model: label ?? undefined,
    }));
  }

  /**
   * `earnings`: each group's sums since a time: the whole quarter hours from `job_sums`, the rows before
   * the first of them (under 15 minutes of rows, by the time index) from `jobs`. The busy time is the
   * time since `since` with one of the group's jobs in flight (for an hour or a day, within it): the sum
   * of the quarter hours' exact spans, the first one clipped at `since`.
   *
   * A model id is the coordinator's (refused jobs keep whatever it sent: 500,000 ids cost hundreds of MB
   * read whole), so a list may be cut in SQL: `top`, the groups that earned most, at most that many, the
   * others summed as `rest`; `measured`, only the groups with energy measured.
   */
  groups(
    since: number,
    by: Grouping,
    now = Date.now(),
    cut: { top?: number | undefined; measured?: boolean } = {},
  ): { rows: GroupSums[]; rest: RestSums | undefined } {
    const db = this.#db;
    const { k0, edge, gRows, gBuckets } = this.#window(since, by, now);
    const SUMS = `sum(served) AS served, sum(cancelled) AS cancelled, sum(missed) AS missed,
      sum(failed) AS failed, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
      sum(earnings_micro) AS earnings_micro, sum(stream_ms) AS stream_ms,
      sum(streamed_tokens) AS streamed_tokens, sum(energy_wh) AS energy_wh`;
    const all = `SELECT g, ${SUMS}
      FROM (
        SELECT ${gBuckets} AS g, ${SUMS} FROM job_sums WHERE bucket >= @k0 GROUP BY 1
        UNION ALL
        SELECT ${gRows}, ${SUM_SQL}
        FROM jobs WHERE received_at >= @since AND received_at < @edge GROUP BY 1
      ) GROUP BY g${cut.measured ? ' HAVING sum(energy_wh) > 0' : ''}`;
    // The rest is one row (`rest` 1) of the groups' count and sums: only the chosen ones reach JavaScript.
    const sql =
      cut.top === undefined
        ? `SELECT 0 AS rest, 1 AS n, * FROM (${all})`
        : `WITH s AS MATERIALIZED (${all}),
             t AS MATERIALIZED (SELECT * FROM s ORDER BY earnings_micro DESC, g LIMIT @top)
           SELECT 0 AS rest, 1 AS n, * FROM t
           UNION ALL
           SELECT 1, count(*), NULL, ${SUMS} FROM s WHERE g NOT IN (SELECT g FROM t)`;
    type Row = Omit<GroupSums, 'busy_ms' | 'group'> & { rest: number; n: number; g: string | number };
    const found = db.prepare(sql).all({
      k0,
      since,
      edge,
      ...(cut.top === undefined ? {} : { top: Math.max(0, Math.floor(cut.top)) }),
    }) as Row[];
    const sums = found.filter((r) => r.rest === 0);
    const left = found.find((r) => r.rest === 1 && r.n > 0);
    // The busy spans of the key each grouping counts under: the model's, the backend's, every job's; of
    // the chosen groups only when the list is cut.
    const named = by === 'model' || by === 'backend';
    const chosen = named && (cut.top !== undefined || cut.measured);
    const keys = chosen
      ? 'key IN (SELECT value FROM json_each(@keys))'
      : by === 'model'
        ? "key >= 'm:' AND key < 'm;'"
        : by === 'backend'
          ? "key >= 'b:' AND key < 'b;'"
          : "key = '*'";
    const params = chosen ? { keys: JSON.stringify(sums.map((r) => `${by[0]}:${r.g}`)) } : {};
    const gBusy = named ? 'substr(key, 3)' : gBuckets;
    const busy = new Map<string | number, number>();
    for (const [g, ms] of db
      .prepare(`SELECT ${gBusy}, sum(ms) FROM busy WHERE bucket >= @q AND ${keys} GROUP BY 1`)
      .raw()
      .iterate({ q: k0, ...params }) as IterableIterator<[string | number, number]>)
      busy.set(g, ms);
    if (since < edge) {
      for (const [g, blob] of db
        .prepare(`SELECT ${gBusy}, spans FROM busy WHERE bucket = @q AND ${keys}`)
        .raw()
        .iterate({ q: k0 - 1, ...params }) as IterableIterator<[string | number, Buffer]>)
        busy.set(g, (busy.get(g) ?? 0) + spansMs(decodeSpans(blob), since - (edge - BUCKET_MS)));
    }
    const sumsOf = ({ rest: _r, n: _n, g: _g, ...r }: Row) => r;
    return {
      rows: sums.map((s) => ({ ...sumsOf(s), group: groupName(by, s.g), busy_ms: busy.get(s.g) ?? 0 })),
      rest: left && { ...sumsOf(left), groups: left.n },
    };
  }

  /**
   * A window since a time: its first whole quarter hour (`k0`, starting at `edge`), and the SQL of a
   * group over rows and over quarter hours (local days and hours over the span the window holds data).
   */
  #window(since: number, by: Grouping, now: number) {
    const k0 = Math.ceil(since / BUCKET_MS);
    const first = this.#db
      .prepare(
        `SELECT min(b) FROM (SELECT min(bucket) AS b FROM job_sums WHERE bucket >= @q
           UNION ALL SELECT min(bucket) FROM energy WHERE bucket >= @q)`,
      )
      .pluck()
      .get({ q: bucketOf(since) }) as number | null;
    const oldest = first === null ? now : Math.max(0, first * BUCKET_MS);
    const to = Math.max(oldest, now);
    return {
      k0,
      edge: k0 * BUCKET_MS,
      gRows: groupSql(by, 'received_at', oldest, to),
      gBuckets: groupSql(by, `bucket * ${BUCKET_MS}`, oldest, to),
    };
  }

  /**
   * `earnings`' energy (issue 31): the jobs' Wh per group and quarter hour (of their receipt), so each
   * is priced at the tariff then; and the GPUs' serving and idle Wh per quarter hour (by time, the first
   * one prorated from `since`), with its group for a day or an hour. Rows only where there is energy.
   */
  energy(
    since: number,
    by: Grouping,
    now = Date.now(),
  ): {
    jobs: { group: string; bucket: number; wh: number }[];
    gpus: { group: string | undefined; bucket: number; serving_wh: number; idle_wh: number }[];
  } {
    const db = this.#db;
    const { k0, edge, gRows, gBuckets } = this.#window(since, by, now);
    const jobs = (
      db
        .prepare(
          `SELECT ${gBuckets} AS g, bucket, sum(energy_wh) AS wh FROM job_sums
           WHERE bucket >= @k0 AND energy_wh > 0 GROUP BY 1, 2
           UNION ALL
           SELECT ${gRows}, received_at / ${BUCKET_MS}, sum(energy_wh) FROM jobs
           WHERE received_at >= @since AND received_at < @edge AND energy_wh > 0 GROUP BY 1, 2`,
        )
        .all({ k0, since, edge }) as { g: string | number; bucket: number; wh: number }[]
    ).map((r) => ({ group: groupName(by, r.g), bucket: r.bucket, wh: r.wh }));
    const byTime = by === 'day' || by === 'hour';
    const gpus = (
      db
        .prepare(
          `SELECT ${byTime ? gBuckets : 'NULL'} AS g, bucket, serving_wh, idle_wh FROM energy WHERE bucket >= ?`,
        )
        .all(bucketOf(since)) as {
        g: string | number | null;
        bucket: number;
        serving_wh: number;
        idle_wh: number;
      }[]
    ).map((r) => {
      // The quarter hour `since` falls in counts for its part after `since`.
      const part = Math.min(
        1,
        ((r.bucket + 1) * BUCKET_MS - Math.max(since, r.bucket * BUCKET_MS)) / BUCKET_MS,
      );
      return {
        group: r.g === null ? undefined : groupName(by, r.g),
        bucket: r.bucket,
        serving_wh: r.serving_wh * part,
        idle_wh: r.idle_wh * part,
      };
    });
    return { jobs, gpus };
  }

  /** `status`: today (since `today`) and the last 7 days (since `week`), from the summaries as `groups`. */
  summary(today: number, week: number): { today: Window; last_7_days: Window } {
    const sum = this.#db.prepare(
      `SELECT coalesce(sum(served), 0) AS served, coalesce(sum(missed), 0) AS missed,
         coalesce(sum(failed), 0) AS failed, coalesce(sum(earnings_micro), 0) AS earnings_micro
       FROM (
         SELECT served, missed, failed, earnings_micro FROM job_sums WHERE bucket >= @k0
         UNION ALL
         SELECT outcome = 'done', outcome = 'error' AND ${MISSED_SQL}, outcome = 'error' AND NOT ${MISSED_SQL},
           earnings_micro
         FROM jobs WHERE received_at >= @since AND received_at < @edge
       )`,
    );
    const w = (since: number): Window => {
      const k0 = Math.ceil(since / BUCKET_MS);
      const r = sum.get({ k0, since, edge: k0 * BUCKET_MS }) as Record<string, number>;
      return {
        served: r.served!,
        missed: r.missed!,
        failed: r.failed!,
        earnings_usdc: r.earnings_micro! / 1_000_000,
      };
    };
    return { today: w(today), last_7_days: w(week) };
  }

  /** The first job received since a time (epoch ms), if any: `status`' week changes when it slides out. */
  oldestSince(since: number): number | null {
    return this.#db.prepare('SELECT min(received_at) FROM jobs WHERE received_at >= ?').pluck().get(since) as
      | number
      | null;
  }

  /** doctor: when the last job was served (epoch ms), if ever. */
  lastServed(): number | undefined {
    return (
      (this.#db.prepare(`SELECT max(received_at) FROM jobs WHERE outcome = 'done'`).pluck().get() as
        | number
        | null) ?? undefined
    );
  }

  /**
   * doctor: the jobs missed since a time, by why, each reason's `per` most missed models by name and the
   * rest as one row (a refused job keeps the coordinator's model id: any number of them), most first.
   * Each reason's count is whole, however many ids.
   */
  missed(since: number, per = 5): MissedRow[] {
    return this.#db
      .prepare(
        `WITH m AS (SELECT refusal, model, count(*) AS n FROM jobs WHERE received_at >= @since AND ${MISSED_SQL}
                    GROUP BY 1, 2),
              r AS (SELECT *, row_number() OVER (PARTITION BY refusal ORDER BY n DESC, model) AS k FROM m)
         SELECT * FROM (
           SELECT refusal, CASE WHEN k <= @per THEN model END AS model, sum(n) AS n, count(*) AS models
           FROM r GROUP BY 1, 2
         ) ORDER BY model IS NULL, n DESC, model`,
      )
      .all({ since, per }) as MissedRow[];
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

/**
 * SQLite opens the ledger by path (following a link: the operator's choice) and its `-journal`, `-wal`
 * and `-shm` beside it (never through a link), the ledger and its `-journal` for reading only when
 * readonly: a FIFO at either held earnings, doctor and run in open() for good; a FIFO or device at the
 * ledger or `-shm`, or a link or folder at any of the three, gave only "disk I/O error" or "unable to
 * open database file", for good, naming none. The ledger is checked opened without blocking, the
 * others by lstat (which never blocks); a file not there is left to SQLite (it makes one).
 */
function refuseNonFiles(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch {
    // Not there, or not openable: SQLite makes it, or says why it cannot.
  }
  if (fd !== undefined) {
    let what: string | undefined;
    try {
      what = notAFile(fstatSync(fd));
    } finally {
      closeSync(fd);
    }
    if (what) throw new LedgerOpenError(`the ledger ${path} is ${what}; point [ledger] path at a file`);
  }
  for (const side of [`${path}-journal`, `${path}-wal`, `${path}-shm`]) {
    const st = lstatSync(side, { throwIfNoEntry: false });
    const what = st && (st.isSymbolicLink() ? 'a symbolic link' : notAFile(st));
    if (what) throw new LedgerOpenError(`the ledger's ${side} is ${what}; remove it (SQLite makes it again)`);
  }
}

function notAFile(st: Stats): string | undefined {
  if (st.isDirectory()) return 'a folder';
  if (!st.isFile()) return 'not a regular file (a FIFO, a device or a socket)';
  return undefined;
}

/** Models kept as their own label when counters resume; the rest are `other` (metric cardinality). */
const SEED_MODELS = 100;

/**
 * A new ledger file is made 0600 before SQLite opens it: its rows are the operator's earnings, and
 * `[ledger] path` may point into a folder others can read. SQLite gives the `-wal` and `-shm` files the
 * database file's mode. Only a file that is not there yet is made (O_EXCL: never through a link another
 * user planted, never blocking on a FIFO); an existing file keeps its mode.
 */
function createPrivate(path: string): void {
  try {
    closeSync(openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
  } catch {
    // There already, or not creatable here: SQLite's own open says what is wrong, if anything.
  }
}

/** A database with no table at all: a file SQLite was given and never wrote. */
function isEmpty(db: Database.Database): boolean {
  return (db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number }).n === 0;
}
