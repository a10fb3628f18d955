import type { Worker } from 'node:worker_threads';
import type { JobRecord, Logger, PluginContext, SeedGroup, SelfTestResult } from '@usepod-agent/core';
import { BUCKET_MS } from './buckets.js';
import type { EnergyPeriod, EnergyRecords, Window } from './ledger.js';
import { newWorker } from './thread.js';
import type { WorkerReply, WorkerRequest } from './worker.js';

/**
 * The main thread's side of the ledger (issue 28): records go to the ledger's worker thread, one
 * transaction per batch, one batch in flight (the next one gathers meanwhile). A job's record resolves
 * its journal write when committed, so its terminal frame leaves after it (decision 0006) and nothing
 * else waits. A failed write (a lock held past the busy timeout, a full disk, a file that cannot be
 * opened) keeps its records for a retry with backoff, at most `maxPending` of them (past that they are
 * counted and dropped, said once), says so once (a warning, a `ledger_failing` notice, metrics), and
 * resolves the waiting writes: the coordinator must still hear the jobs ended. A ledger from a newer
 * agent is left alone and nothing is recorded.
 */
export interface WriterOptions {
  path: string;
  log: Logger;
  notify: PluginContext['notify'];
  /** Records kept for a retry while the ledger fails (each a few hundred bytes). */
  maxPending: number;
  /** The first retry's delay; it doubles up to `MAX_RETRY_MS`. */
  retryMs: number;
  /** How long a write waits for another process's lock before it fails. */
  busyMs: number;
  /** The most pages the ledger file may have (SQLite's max_page_count); none by default. */
  maxPages?: number | undefined;
  /**
   * How long the ledger's thread stays with nothing to do (no request in flight, no job running) before
   * it ends (`LINGER_MS` by default): an idle agent holds no worker isolate or SQLite (about 11 MB
   * resident, decision 0008). The next record, job start or query starts it again.
   */
  lingerMs?: number | undefined;
  /** How long energy periods wait for a record to go with (`period()`); a quarter hour by default. */
  periodsHeldMs?: number | undefined;
  /** Told each time the ledger's thread starts (true) or ends (false): tests, embedders. */
  onThread?: ((running: boolean) => void) | undefined;
  /**
   * How long the ledger's thread may take to answer before it is taken for hung (`ANSWER_MS` by default;
   * more than `busyMs`): a disk that never answers blocks it in a system call, which nothing ends.
   */
  answerMs?: number | undefined;
}

const MAX_RETRY_MS = 60_000;
/**
 * How long the ledger's thread may go without answering before it is taken for hung: past a lock's wait
 * (`busyMs`, 5 s) and a big older ledger's first summing (9.6 s for 1.5 M rows), short of a stall.
 */
export const ANSWER_MS = 30_000;
/** How long energy periods may wait for a record to go with: one of the ledger's quarter hours. */
const PERIODS_HELD_MS = BUCKET_MS;
/** The thread's linger by default: a burst of jobs or a busy minute keeps it, an idle agent does not. */
export const LINGER_MS = 30_000;
/**
 * How long `status`' figures go on at least from one SQL pass (a second of the ledger's thread on 1.5 M
 * rows): between passes each committed record is added to them, and a pass corrects what slid out of the
 * week, only when something did (the pass tells when the week's oldest row leaves) and at midnight, so
 * an idle agent's status does not start the ledger's thread again every 5 minutes.
 */
const SUMMARY_TTL_MS = 300_000;
const WEEK_MS = 7 * 86_400_000;

type Item =
  | { job: JobRecord }
  | { test: SelfTestResult }
  | { energy: { jobId: string; receivedAt: number; wh: number } }
  | { period: EnergyPeriod };

/**
 * Jobs whose energy may still come (the GPU plugin tells it a poll or two after the job ended): their
 * receive time finds the row by the time index. The oldest are forgotten past this many.
 */
const RECENT_JOBS = 10_000;

/** Energy told before its record waits at most for this many jobs (the records come a turn later). */
const EARLY_JOBS = 1_000;

const midnight = (d: Date) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();

class WorkerError extends Error {
  constructor(
    message: string,
    readonly sqliteCode: string | undefined,
    readonly newer: boolean,
  ) {
    super(message);
  }
}

export class LedgerWriter {
  readonly #o: WriterOptions;
  #worker: Worker | undefined;
  #nextId = 1;
  readonly #calls = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  /**
   * The thread has left a request unanswered past `answerMs` (a disk that does not answer): what asks
   * for a bounded answer gets its fallback at once, until the thread answers anything.
   */
  #hung = false;
  /** Records waiting for the next batch, with the writes they resolve. */
  #queue: Item[] = [];
  #waiters: (() => void)[] = [];
  /** The writes the batch in flight resolves: a thread that hangs on it lets them go (`#stalled`). */
  #flightWaiters: (() => void)[] = [];
  #writing = false;
  #current: Promise<void> | undefined;
  /** Records of the batch being written: they count against `maxPending` too. */
  #inFlight = 0;
  #failing: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryMs: number;
  #dropped = 0;
  #newer = false;
  #closed = false;
  #summary:
    | {
        at: number;
        today: number;
        week: number;
        /** The figures hold until then: the week's oldest row slides out (Infinity: no row in the week). */
        slides: number;
        value: { today: Window; last_7_days: Window };
      }
    | undefined;
  #summarising = false;
  readonly #recent = new Map<string, number>();
  /**
   * Energy told before its job's record (Wh): the executor tells `job_end`, then journals the record on
   * the next turn, and the GPU plugin settles a job in its own `job_end` when a poll fell in the job's
   * last millisecond. Held for the record; the oldest forgotten past EARLY_JOBS (a job never recorded).
   */
  readonly #early = new Map<string, number>();
  /** Jobs started and not yet ended: the thread stays while any runs, so each one's record finds it up. */
  readonly #running = new Set<string>();
  #linger: NodeJS.Timeout | undefined;
  /** Due when energy periods have waited a quarter hour for a record to go with (`period()`). */
  #heldPeriods: NodeJS.Timeout | undefined;
  /** Threads ending (closing their file); `close()` waits for them. */
  #retiring: Promise<void> | undefined;
  /** Counted before the metrics exist (a failure while the agent starts), then kept in step with them. */
  #failureCount = 0;
  #droppedCount = 0;
  #metrics:
    | {
        failures: ReturnType<PluginContext['metrics']['counter']>;
        dropped: ReturnType<PluginContext['metrics']['counter']>;
        pending: ReturnType<PluginContext['metrics']['gauge']>;
      }
    | undefined;

  constructor(o: Omit<WriterOptions, 'metrics'>) {
    this.#o = o;
    this.#retryMs = o.retryMs;
  }

  /**
   * Declares the ledger's metrics, once the agent runs (onStart): `doctor` and `selftest` apply plugins
   * without serving `/metrics`, and a metric may be declared only once on a registry.
   */
  attachMetrics(metrics: PluginContext['metrics']): void {
    if (this.#metrics) return;
    this.#metrics = {
      failures: metrics.counter(
        'usepod_agent_ledger_write_failures_total',
        'Ledger writes that failed (locked, full or unopenable file); their records are retried.',
      ),
      dropped: metrics.counter(
        'usepod_agent_ledger_dropped_total',
        'Ledger records dropped: more were waiting for a failing ledger than it keeps.',
      ),
      pending: metrics.gauge('usepod_agent_ledger_pending', 'Ledger records waiting to be written.'),
    };
    this.#metrics.failures.inc(this.#failureCount);
    this.#metrics.dropped.inc(this.#droppedCount);
    this.#metrics.pending.set(this.pending);
  }

  /** Whether records are kept: false for a ledger from a newer agent (left alone). */
  get recording(): boolean {
    return !this.#newer;
  }

  /** Why the ledger fails now, if it does. */
  get failing(): string | undefined {
    return this.#failing;
  }

  get pending(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Whether the ledger's thread runs now (it ends after `lingerMs` with nothing to do). */
  get threadRunning(): boolean {
    return this.#worker !== undefined;
  }

  /**
   * A job started: the thread is started now (and the file opened) if it is not running, and stays until
   * the job has ended, so the job's record (which its terminal frame waits for) finds it ready.
   */
  jobStarted(jobId: string): void {
    if (this.#newer || this.#closed) return;
    this.#running.add(jobId);
    // A job whose end is never told (none should be) cannot keep the thread for good past this many.
    if (this.#running.size > RECENT_JOBS) this.#running.delete(this.#running.values().next().value!);
    clearTimeout(this.#linger);
    this.#linger = undefined;
    // An open that fails is the write's to tell (once, as today), not this one's.
    if (!this.#worker) this.#call({ op: 'open' }).catch(() => {});
  }

  jobEnded(jobId: string): void {
    if (this.#running.delete(jobId)) this.#idle();
  }

  /** Resolves once the records are committed, or kept for a retry, or dropped: never rejects. */
  write(jobs: readonly JobRecord[]): Promise<void> {
    if (this.#newer || this.#closed) return Promise.resolve();
    const items: Item[] = jobs.map((job) => ({ job }));
    for (const j of jobs) {
      const early = this.#early.get(j.jobId);
      this.#early.delete(j.jobId);
      // A job turned away never reached an engine: no energy comes for it.
      if (j.refusal) continue;
      if (early !== undefined) {
        items.push({ energy: { jobId: j.jobId, receivedAt: j.receivedAt, wh: early } });
        continue;
      }
      this.#recent.set(j.jobId, j.receivedAt);
      if (this.#recent.size > RECENT_JOBS) this.#recent.delete(this.#recent.keys().next().value!);
    }
    this.#enqueue(items);
    // While the ledger fails the records wait for the retry (or the hung thread), not the terminal frames.
    if (this.#failing !== undefined) {
      this.#pump();
      return Promise.resolve();
    }
    const done = new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#pump();
    return done;
  }

  /**
   * A job's energy (Wh), recorded with the next batch on the job's row and its quarter hour; told before
   * the record, it waits for it (`#early`); told twice, the second is ignored.
   */
  energy(jobId: string, wh: number): void {
    if (this.#newer || this.#closed) return;
    const receivedAt = this.#recent.get(jobId);
    if (receivedAt === undefined) {
      // Its record may be on its way (`#early`); told twice, the first figure stands.
      if (this.#early.has(jobId)) return;
      this.#early.set(jobId, wh);
      if (this.#early.size > EARLY_JOBS) this.#early.delete(this.#early.keys().next().value!);
      return;
    }
    this.#recent.delete(jobId);
    this.#enqueue([{ energy: { jobId, receivedAt, wh } }]);
    this.#pump();
  }

  /**
   * The GPUs' energy between two polls (every few seconds while `[energy]`, `[yield]` or the heat guard
   * watch them). Written with the next record, or once a quarter hour (the ledger's bucket): written
   * as they came, they would start the thread every poll, and an idle agent on a GPU machine would never
   * let it end (its ~11 MB, decision 0008's fifth pass). A quarter hour of polls is a few hundred items.
   */
  period(p: EnergyPeriod): void {
    if (this.#newer || this.#closed) return;
    this.#enqueue([{ period: p }]);
    this.#heldPeriods ??= setTimeout(() => {
      this.#heldPeriods = undefined;
      this.#pump();
    }, this.#o.periodsHeldMs ?? PERIODS_HELD_MS).unref();
  }

  /** A self-test, recorded with the next batch. */
  selftest(result: SelfTestResult): void {
    if (this.#newer || this.#closed) return;
    this.#enqueue([{ test: result }]);
    this.#pump();
  }

  /**
   * The ledger's sums before `before` for the counters; none (said once) when it cannot be read or its
   * thread does not answer in `answerMs` (the agent's start waits for them).
   */
  async totals(before: number): Promise<SeedGroup[]> {
    try {
      return (await this.#within(this.#call({ op: 'totals', before }), [])) as SeedGroup[];
    } catch (err) {
      this.#fail(err);
      return [];
    }
  }

  /** Deletes rows past the retention; 0 when the ledger cannot be written or does not answer in time. */
  async prune(days: number): Promise<number> {
    try {
      return (await this.#within(this.#call({ op: 'prune', days }), 0)) as number;
    } catch (err) {
      this.#fail(err);
      return 0;
    }
  }

  /**
   * Today and the last 7 days, as last summed (at most a few seconds old): `status` reads it
   * synchronously, the sum runs in the worker.
   */
  summary(now = new Date()): { today: Window; last_7_days: Window } | undefined {
    const s = this.#summary;
    const t = now.getTime();
    if (!s || midnight(now) !== s.today || (t > s.slides && t - s.at > SUMMARY_TTL_MS))
      void this.refreshSummary(now);
    return s?.value;
  }

  /**
   * Sums `status`' figures again; waits at most `answerMs` (the agent's start waits for it). A pass the
   * thread has not answered stays the only one asked: status, read every few seconds, asks no more.
   */
  async refreshSummary(now = new Date()): Promise<void> {
    if (this.#summarising || this.#newer || this.#closed) return;
    this.#summarising = true;
    const today = midnight(now);
    const week = now.getTime() - WEEK_MS;
    const pass = this.#call({ op: 'summary', today, week })
      .then((v) => {
        const { oldest, ...value } = v as { today: Window; last_7_days: Window; oldest: number | null };
        const slides = oldest === null ? Number.POSITIVE_INFINITY : oldest + WEEK_MS;
        this.#summary = { at: now.getTime(), today, week, slides, value };
      })
      // The write path says what fails; status shows the last figures it had.
      .catch(() => {})
      .finally(() => {
        this.#summarising = false;
      });
    await this.#within(pass, undefined);
  }

  /** Writes what waits (bounded by `waitMs`), then closes the file and ends the thread. */
  async close(waitMs = 5_000): Promise<void> {
    if (this.#closed) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if ((this.#queue.length > 0 || this.#current) && !this.#newer) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#drain(),
        new Promise((r) => {
          timer = setTimeout(r, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#closed = true;
    clearTimeout(this.#heldPeriods);
    clearTimeout(this.#linger);
    this.#linger = undefined;
    const w = this.#worker;
    if (w) {
      await this.#call({ op: 'close' }).catch(() => {});
      this.#worker = undefined;
      await w.terminate();
      this.#o.onThread?.(false);
    }
    await this.#retiring;
    if (this.#queue.length > 0) {
      this.#o.log.warn('ledger closed with records unwritten', {
        file: this.#o.path,
        records: this.#queue.length,
      });
    }
    this.#release();
  }

  #enqueue(items: Item[]): void {
    const room = this.#o.maxPending - this.pending;
    if (items.length > room) {
      const lost = items.length - Math.max(0, room);
      if (this.#dropped === 0) {
        this.#o.log.warn('the ledger is failing and its queue is full: records are dropped', {
          file: this.#o.path,
          kept: this.#o.maxPending,
        });
      }
      this.#dropped += lost;
      this.#droppedCount += lost;
      this.#metrics?.dropped.inc(lost);
      items = items.slice(0, Math.max(0, room));
    }
    for (const i of items) this.#queue.push(i);
    this.#metrics?.pending.set(this.pending);
  }

  /** Sends what waits as one batch, unless one is being written or a retry is due later. */
  #pump(): void {
    if (this.#writing || this.#queue.length === 0 || this.#retryTimer || this.#closed) return;
    void this.#flushNow();
  }

  /** The batch being written, then what waited behind it: at most a few attempts (closing). */
  async #drain(): Promise<void> {
    for (let i = 0; i < 3 && (this.#queue.length > 0 || this.#current); i++)
      await (this.#current ?? this.#flushNow());
  }

  #flushNow(): Promise<void> {
    if (this.#writing || this.#queue.length === 0) return this.#current ?? Promise.resolve();
    const p: Promise<void> = this.#writeBatch().finally(() => {
      if (this.#current === p) this.#current = undefined;
    });
    this.#current = p;
    return p;
  }

  async #writeBatch(): Promise<void> {
    this.#writing = true;
    // Whatever periods were held go in this batch.
    clearTimeout(this.#heldPeriods);
    this.#heldPeriods = undefined;
    const batch = this.#queue;
    const waiters = this.#waiters;
    this.#queue = [];
    this.#waiters = [];
    this.#flightWaiters = waiters;
    this.#inFlight = batch.length;
    const jobs: JobRecord[] = [];
    const tests: SelfTestResult[] = [];
    const jobEnergy: { jobId: string; receivedAt: number; wh: number }[] = [];
    const periods: EnergyPeriod[] = [];
    for (const i of batch) {
      if ('job' in i) jobs.push(i.job);
      else if ('test' in i) tests.push(i.test);
      else if ('energy' in i) jobEnergy.push(i.energy);
      else periods.push(i.period);
    }
    const energy: EnergyRecords = { jobs: jobEnergy, periods };
    try {
      await this.#call({ op: 'write', jobs, tests, energy });
      this.#inFlight = 0;
      this.#count(jobs);
      this.#recovered();
    } catch (err) {
      // Kept in front of what came meanwhile (both were within the bound already).
      this.#inFlight = 0;
      this.#queue = batch.concat(this.#queue);
      this.#fail(err);
    } finally {
      this.#writing = false;
      this.#flightWaiters = [];
      for (const w of waiters) w();
      this.#metrics?.pending.set(this.pending);
    }
    this.#pump();
  }

  /**
   * Adds committed jobs to `status`' figures. The ledger's thread answers in order, so a pass asked before
   * this batch arrives before it (and is added to) and one asked after already holds it.
   */
  #count(jobs: readonly JobRecord[]): void {
    const s = this.#summary;
    if (!s) return;
    for (const j of jobs) {
      const add = (w: Window) => {
        if (j.outcome === 'done') {
          w.served++;
          if (j.inputPer1m !== undefined && j.outputPer1m !== undefined)
            w.earnings_usdc += (j.inputTokens * j.inputPer1m + j.outputTokens * j.outputPer1m) / 1e12;
        } else if (j.outcome === 'error') {
          if (j.refusal && j.refusal !== 'malformed') w.missed++;
          else w.failed++;
        }
      };
      if (j.receivedAt >= s.today) add(s.value.today);
      if (j.receivedAt >= s.week) {
        add(s.value.last_7_days);
        s.slides = Math.min(s.slides, j.receivedAt + WEEK_MS);
      }
    }
  }

  #fail(err: unknown): void {
    const e = err as Partial<WorkerError> & Error;
    if (e.newer) {
      if (!this.#newer) this.#o.log.warn(`${e.message}; jobs are not recorded (USEPOD_LEDGER)`, {});
      this.#newer = true;
      this.#queue = [];
      this.#metrics?.pending.set(this.pending);
      this.#release();
      return;
    }
    this.#failed(e.message, e.sqliteCode);
    if (!this.#closed && !this.#retryTimer) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
        if (this.#queue.length === 0) {
          // Nothing to write: an empty batch still tells whether the file is writable again.
          void this.#probe();
        } else this.#pump();
      }, this.#retryMs);
      this.#retryTimer.unref();
    }
  }

  /** Counts a failure; the first one of a spell is said (a warning, a notice) and frames stop waiting. */
  #failed(why: string, sqliteCode?: string): void {
    this.#failureCount++;
    this.#metrics?.failures.inc();
    if (this.#failing !== undefined) return;
    this.#failing = why;
    this.#o.log.warn(
      `the ledger ${this.#o.path} cannot be written: ${why}; records are kept and retried, the agent serves on (USEPOD_LEDGER)`,
      { ...(sqliteCode ? { sqlite: sqliteCode } : {}) },
    );
    this.#o.notify({
      name: 'ledger_failing',
      severity: 'warning',
      title: 'The ledger cannot be written',
      message: `${this.#o.path}: ${why}. Jobs are served; their records wait for a retry.`,
    });
    // Frames waiting for a record are not held through a retry.
    this.#release();
  }

  /**
   * A request the thread has not answered in `answerMs`: the ledger fails (said once, counted once per
   * spell) and frames stop waiting, but the request stays the thread's (it may commit yet: sending its records again could write
   * them twice) and the thread stays the only one (a new one would hang on the same disk). Its answer,
   * when it comes, carries on as any answer does.
   */
  #stalled(): void {
    if (this.#closed || this.#newer || this.#hung) return;
    this.#hung = true;
    this.#failed(`its thread has not answered in ${this.#answerMs / 1000} s (a disk that does not answer?)`);
  }

  /**
   * The hung thread answered: what waits is written, or an empty write tells whether the file is writable
   * again (a write the thread was stuck in tells it itself).
   */
  #woke(): void {
    if (this.#failing === undefined || this.#writing || this.#retryTimer || this.#closed) return;
    if (this.#queue.length > 0) this.#pump();
    else void this.#probe();
  }

  get #answerMs(): number {
    return this.#o.answerMs ?? ANSWER_MS;
  }

  /** `p`, or `fallback` once the thread has not answered in `answerMs` (at once if it is hung already). */
  #within<T, F>(p: Promise<T>, fallback: F): Promise<T | F> {
    if (this.#hung) return Promise.resolve(fallback);
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<F>((resolve) => {
        timer = setTimeout(() => resolve(fallback), this.#answerMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async #probe(): Promise<void> {
    try {
      await this.#call({ op: 'write', jobs: [], tests: [] });
      this.#recovered();
    } catch (err) {
      this.#fail(err);
    }
  }

  #recovered(): void {
    this.#retryMs = this.#o.retryMs;
    if (this.#failing === undefined) return;
    this.#failing = undefined;
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#o.log.info('the ledger is written again', {
      file: this.#o.path,
      ...(dropped ? { dropped } : {}),
    });
    this.#o.notify({
      name: 'ledger_failing',
      severity: 'warning',
      title: 'The ledger is written again',
      message: `${this.#o.path}${dropped ? `: ${dropped} record(s) were dropped meanwhile` : ''}`,
      resolved: true,
    });
  }

  #release(): void {
    const waiters = this.#flightWaiters.concat(this.#waiters);
    this.#flightWaiters = [];
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #spawn(): Worker {
    const w = newWorker({ path: this.#o.path, busyMs: this.#o.busyMs, maxPages: this.#o.maxPages });
    w.unref();
    w.on('message', (m: WorkerReply) => {
      const call = this.#calls.get(m.id);
      if (!call) return;
      this.#calls.delete(m.id);
      clearTimeout(call.timer);
      const woke = this.#hung;
      this.#hung = false;
      if (m.ok) call.resolve(m.value);
      else call.reject(new WorkerError(m.error, m.code, m.newer));
      if (woke) this.#woke();
      this.#idle();
    });
    const gone = (why: string) => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      clearTimeout(this.#linger);
      this.#linger = undefined;
      this.#o.onThread?.(false);
      // Started again by the next need (a record, a retry, a job, a query).
      this.#hung = false;
      for (const c of this.#calls.values()) {
        clearTimeout(c.timer);
        c.reject(new WorkerError(why, undefined, false));
      }
      this.#calls.clear();
    };
    w.on('error', (err) => gone(`the ledger thread failed: ${err.message}`));
    w.on('exit', (code) => gone(`the ledger thread exited (${code})`));
    return w;
  }

  /**
   * Nothing to do: no request in flight, no job running (records waiting for a retry wait for its timer,
   * which starts the thread again). The thread ends after the linger unless something comes meanwhile.
   */
  #idle(): void {
    if (!this.#worker || this.#closed || this.#calls.size > 0 || this.#running.size > 0) return;
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => this.#retire(), this.#o.lingerMs ?? LINGER_MS);
    this.#linger.unref();
  }

  /**
   * Ends an idle thread: it closes its file (a clean close, as at the agent's close) and exits. It is
   * let go at once, so a need that comes meanwhile starts a new one; the file's state is the
   * committed transactions', whichever connection wrote them.
   */
  #retire(): void {
    this.#linger = undefined;
    const w = this.#worker;
    if (!w || this.#closed || this.#calls.size > 0 || this.#running.size > 0 || this.#writing) return;
    if (this.#queue.length > 0 && !this.#retryTimer) return;
    this.#worker = undefined;
    this.#o.onThread?.(false);
    const id = this.#nextId++;
    const done = new Promise<void>((resolve) => {
      const end = () => void w.terminate().then(() => resolve(), resolve);
      w.on('message', (m: WorkerReply) => {
        if (m.id === id) end();
      });
      w.once('exit', () => resolve());
      w.once('error', end);
    });
    w.postMessage({ op: 'close', id } satisfies WorkerRequest);
    const retiring: Promise<void> = Promise.all([this.#retiring, done]).then(() => {
      if (this.#retiring === retiring) this.#retiring = undefined;
    });
    this.#retiring = retiring;
  }

  #call(req: Omit<WorkerRequest, 'id'>): Promise<unknown> {
    if (this.#closed && req.op !== 'close') return Promise.reject(new Error('the ledger is closed'));
    clearTimeout(this.#linger);
    this.#linger = undefined;
    if (!this.#worker) {
      this.#worker = this.#spawn();
      this.#o.onThread?.(true);
    }
    const id = this.#nextId++;
    const w = this.#worker;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#stalled(), this.#answerMs);
      timer.unref();
      this.#calls.set(id, { resolve, reject, timer });
      w.postMessage({ ...req, id });
    });
  }
}
