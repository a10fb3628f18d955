import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { type JobRecord, type SeedGroup, type SelfTestResult, UsepodError } from '@usepod-agent/core';
import Database from 'better-sqlite3';

/**
 * The operator's ledger (issue 18): one row per job the agent received, served, failed, cancelled or
 * refused, in a SQLite file the operator owns and may read with `sqlite3` (docs/operating.md). WAL: a
 * committed transaction survives the process being killed; rows are written before the coordinator hears
 * the job ended (core's JobJournal). Schema versions are SQLite's `user_version`; a database newer than
 * this agent knows is refused, never rewritten.
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
     error_code      TEXT,              -- PROTOCOL.md 5.4; out_of_capacity and model_not_loaded are missed jobs
     input_tokens    INTEGER NOT NULL,
     output_tokens   INTEGER NOT NULL,
     bytes           INTEGER NOT NULL,
     input_per_1m    INTEGER,           -- advertised prices then, micro-USDC per 1M tokens
     output_per_1m   INTEGER,
     earnings_micro  REAL    NOT NULL   -- estimate: served tokens times those prices
   );
   CREATE INDEX jobs_received_at ON jobs (received_at);`,
  // 2: why a job was turned away (core's Refusal): capacity and the token budget apart.
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

const expand = (p: string) => (p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p);

/** `[ledger] path` (home expanded), else `ledger.db` beside the identity key; undefined when "off". */
export function ledgerPath(path: string | undefined, keyPath: string): string | undefined {
  if (path === 'off') return undefined;
  return path ? expand(path) : join(dirname(expand(keyPath)), 'ledger.db');
}

export class Ledger {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #insertMany: (records: JobRecord[]) => void;
  readonly #insertSelfTest: Database.Statement;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO jobs (job_id, model, backend, format, received_at, first_byte_ms, duration_ms, outcome, error_code,
         input_tokens, output_tokens, bytes, input_per_1m, output_per_1m, earnings_micro, refusal)
       VALUES (@job_id, @model, @backend, @format, @received_at, @first_byte_ms, @duration_ms, @outcome, @error_code,
         @input_tokens, @output_tokens, @bytes, @input_per_1m, @output_per_1m, @earnings_micro, @refusal)`,
    );
    this.#insertSelfTest = db.prepare(
      `INSERT INTO selftests (at, backend, model, ok, ttft_ms, tokens_per_sec, tokens, error)
       VALUES (@at, @backend, @model, @ok, @ttft_ms, @tokens_per_sec, @tokens, @error)`,
    );
    this.#insertMany = db.transaction((records: JobRecord[]) => {
      for (const r of records) this.#insert.run(row(r));
    });
  }

  /** Opens (creating, migrating) the ledger; `readonly` opens an existing one for queries only. */
  static open(path: string, opts: { readonly?: boolean } = {}): Ledger {
    let db: Database.Database;
    try {
      if (!opts.readonly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    } catch (err) {
      throw new UsepodError('USEPOD_LEDGER', `cannot open the ledger ${path}: ${(err as Error).message}`, {
        user: true,
        cause: err,
      });
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > LEDGER_SCHEMA_VERSION) {
      db.close();
      throw new UsepodError(
        'USEPOD_LEDGER',
        `the ledger ${path} has schema version ${version}, newer than this agent knows (${LEDGER_SCHEMA_VERSION}); upgrade the agent (the file is left as it is)`,
        { user: true },
      );
    }
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      // NORMAL under WAL: a killed process loses no committed transaction (only a power cut may).
      db.pragma('synchronous = NORMAL');
      db.transaction(() => {
        for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
        db.pragma(`user_version = ${MIGRATIONS.length}`);
      })();
    } else if (version < LEDGER_SCHEMA_VERSION) {
      db.close();
      throw new UsepodError(
        'USEPOD_LEDGER',
        `the ledger ${path} is from an older agent; run the agent once to upgrade it`,
        {
          user: true,
        },
      );
    }
    return new Ledger(path, db);
  }

  write(records: JobRecord[]): void {
    this.#insertMany(records);
  }

  /** One self-test as it happened: a failure keeps no figures (the result carries the last good ones). */
  writeSelfTest(r: SelfTestResult): void {
    this.#insertSelfTest.run({
      at: Date.parse(r.at),
      backend: r.backend,
      model: r.model,
      ok: r.ok ? 1 : 0,
      ttft_ms: r.ok ? (r.ttftMs ?? null) : null,
      tokens_per_sec: r.ok ? (r.tokensPerSecond ?? null) : null,
      tokens: r.ok ? (r.tokens ?? null) : null,
      error: r.ok ? null : (r.error ?? null),
    });
  }

  /** Deletes rows older than `days`; returns how many jobs. */
  prune(days: number, now = Date.now()): number {
    const before = now - days * 86_400_000;
    this.#db.prepare('DELETE FROM selftests WHERE at < ?').run(before);
    return this.#db.prepare('DELETE FROM jobs WHERE received_at < ?').run(before).changes;
  }

  /** For queries (earnings, doctor, status). */
  get db(): Database.Database {
    return this.#db;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

function row(r: JobRecord) {
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

/** Models kept as their own label when counters resume; the rest are `other` (metric cardinality). */
const SEED_MODELS = 100;

/** The sums of the rows received before `before`, in the shape of the Prometheus counters (AgentMetrics.seed). */
export function seedGroups(ledger: Ledger, before = Number.MAX_SAFE_INTEGER): SeedGroup[] {
  const served = new Set(
    (
      ledger.db
        .prepare(
          `SELECT model FROM jobs WHERE outcome = 'done' AND received_at < ? GROUP BY model
           ORDER BY sum(earnings_micro) DESC LIMIT ?`,
        )
        .all(before, SEED_MODELS) as { model: string }[]
    ).map((r) => r.model),
  );
  const rows = ledger.db
    .prepare(
      `SELECT outcome, error_code AS errorCode, model, backend, count(*) AS jobs, sum(input_tokens) AS inputTokens,
              sum(output_tokens) AS outputTokens, sum(bytes) AS bytes, sum(earnings_micro) AS earningsMicro
       FROM jobs WHERE received_at < ? GROUP BY outcome, error_code, model, backend`,
    )
    .all(before) as (Omit<SeedGroup, 'model'> & {
    model: string;
    errorCode: string | null;
    backend: string | null;
  })[];
  return rows.map((r) => ({
    ...r,
    errorCode: r.errorCode ?? undefined,
    backend: r.backend ?? undefined,
    model: served.has(r.model) ? r.model : undefined,
  }));
}
