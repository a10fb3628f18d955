import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobRecord, Logger, SelfTestResult } from '@usepod-agent/core';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Ledger } from './ledger.js';
import { LedgerWriter, type WriterOptions } from './writer.js';

/**
 * The ledger's thread ends while idle (issue 30, decision 0008): a real SQLite file, a real worker
 * thread, a short linger. The thread's starts and ends are observed through `onThread`, never timed.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const quiet: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return quiet;
  },
} as unknown as Logger;

async function setup(o: Partial<WriterOptions> & { file?: (dir: string) => string } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'usepod-writer-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const path = o.file ? o.file(dir) : join(dir, 'ledger.db');
  const notices: Parameters<WriterOptions['notify']>[0][] = [];
  let resolved: (() => void) | undefined;
  /** The next notice that says the ledger is written again. */
  const recovered = new Promise<void>((r) => {
    resolved = r;
  });
  const threads: boolean[] = [];
  let next: { running: boolean; resolve: () => void }[] = [];
  const writer = new LedgerWriter({
    path,
    log: quiet,
    notify: (n) => {
      notices.push(n);
      if (n.resolved) resolved?.();
    },
    maxPending: 100,
    retryMs: 20,
    busyMs: 1_000,
    lingerMs: 40,
    ...o,
    onThread: (running) => {
      threads.push(running);
      const due = next.filter((w) => w.running === running);
      next = next.filter((w) => w.running !== running);
      for (const w of due) w.resolve();
      o.onThread?.(running);
    },
  });
  cleanup.push(() => writer.close());
  /** The thread's next start (true) or end (false). */
  const thread = (running: boolean) => new Promise<void>((resolve) => next.push({ running, resolve }));
  return { writer, path, dir, notices, threads, thread, recovered };
}

let seq = 0;
const job = (o: Partial<JobRecord> = {}): JobRecord => ({
  jobId: `job-${++seq}`,
  model: 'm',
  backend: 'vllm',
  outcome: 'done',
  inputTokens: 1,
  outputTokens: 2,
  bytes: 3,
  durationMs: 4,
  firstByteMs: undefined,
  receivedAt: Date.now(),
  format: 'openai',
  inputPer1m: undefined,
  outputPer1m: undefined,
  ...o,
});

/** The job ids the file holds, in the order they were committed. */
const ids = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT job_id FROM jobs ORDER BY rowid').pluck().all() as string[];
  } finally {
    db.close();
  }
};

describe("the ledger's thread while idle", () => {
  it('ends after the linger with nothing to do, and starts again for the next record, which is committed', async () => {
    const { writer, path, threads, thread } = await setup();
    const ended = thread(false);
    const a = job();
    await writer.write([a]);
    expect(writer.threadRunning).toBe(true);
    await ended;
    expect(writer.threadRunning).toBe(false);
    // Records queued while the new thread starts are all written, in order.
    const b = job();
    const c = job();
    const first = writer.write([b]);
    const second = writer.write([c]);
    expect(writer.threadRunning).toBe(true);
    await Promise.all([first, second]);
    expect(ids(path)).toEqual([a.jobId, b.jobId, c.jobId]);
    expect(threads).toEqual([true, false, true]);
  });

  it('writes a record that comes while the thread is ending: a new thread takes it', async () => {
    const r = job();
    let done: Promise<void> | undefined;
    const { writer, path, thread } = await setup({
      // At the very moment the idle thread is let go (its file not yet closed).
      onThread: (running) => {
        if (!running && !done) done = writer.write([r]);
      },
    });
    const ended = thread(false);
    await writer.prune(400);
    await ended;
    expect(writer.threadRunning).toBe(true);
    await done;
    expect(ids(path)).toEqual([r.jobId]);
  });

  it('is warmed by a job start (the file opened) and kept until the job ends, however long it runs', async () => {
    const { writer, path, threads, thread } = await setup();
    let ended = thread(false);
    await writer.prune(400);
    await ended;
    const started = thread(true);
    writer.jobStarted('long');
    await started;
    // The job outlasts the linger many times over: the thread stays for its record.
    await new Promise((r) => setTimeout(r, 200));
    expect(writer.threadRunning).toBe(true);
    expect(threads).toEqual([true, false, true]);
    ended = thread(false);
    writer.jobEnded('long');
    await writer.write([job({ jobId: 'long' })]);
    expect(ids(path)).toEqual(['long']);
    await ended;
    expect(threads).toEqual([true, false, true, false]);
  });

  it('says a failing ledger once, however often its thread ends and starts between retries', async () => {
    const { writer, path, notices, threads, thread, recovered } = await setup({
      file: (d) => join(d, 'taken'),
    });
    await mkdir(path);
    const r = job();
    await writer.write([r]);
    expect(writer.failing).toBeDefined();
    // Retries at 20, 40, 80, 160 ms...: past the 40 ms linger the thread ends between them.
    for (let i = 0; i < 3; i++) {
      await thread(false);
      await thread(true);
    }
    expect(notices.filter((n) => !n.resolved)).toHaveLength(1);
    expect(writer.pending).toBe(1);
    await rm(path, { recursive: true });
    await recovered;
    expect(ids(path)).toEqual([r.jobId]);
    expect(notices.map((n) => n.resolved ?? false)).toEqual([false, true]);
    expect(threads.filter((t) => t).length).toBeGreaterThan(3);
  });

  it('flushes at close what was written after the thread ended', async () => {
    const { writer, path, thread } = await setup();
    const ended = thread(false);
    await writer.prune(400);
    await ended;
    const rs = [job(), job(), job()];
    for (const r of rs) void writer.write([r]);
    const test: SelfTestResult = {
      backend: 'vllm',
      kind: 'vllm',
      model: 'm',
      ok: true,
      failures: 0,
      withdrawn: false,
      ejectedUntil: undefined,
      jobError: undefined,
      ttftMs: 1,
      tokensPerSecond: 2,
      tokens: 3,
      at: new Date().toISOString(),
      error: undefined,
    };
    writer.selftest(test);
    await writer.close();
    expect(writer.threadRunning).toBe(false);
    expect(ids(path)).toEqual(rs.map((r) => r.jobId));
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT count(*) FROM selftests').pluck().get()).toBe(1);
    db.close();
  });

  it("keeps status' figures from committed records: no pass (no thread) while idle until a row slides out of the week", async () => {
    const { writer, thread, threads } = await setup();
    const noon = new Date();
    noon.setHours(12, 0, 0, 0);
    const at = (min: number) => new Date(noon.getTime() + min * 60_000);
    // A job of a week ago that slides out of the last 7 days 20 minutes after noon.
    await writer.write([job({ receivedAt: noon.getTime() - 7 * 86_400_000 + 20 * 60_000 })]);
    await writer.refreshSummary(noon);
    let ended = thread(false);
    await ended;
    // A record committed meanwhile is added to the figures.
    const fresh = job({ receivedAt: at(1).getTime() });
    ended = thread(false);
    await writer.write([fresh]);
    await ended;
    expect(writer.summary(at(2))).toMatchObject({ today: { served: 1 }, last_7_days: { served: 2 } });
    // Ten minutes on (past the 5 minutes a pass's figures used to last): nothing slid out, no pass.
    expect(writer.summary(at(10))?.last_7_days.served).toBe(2);
    expect(writer.threadRunning).toBe(false);
    // Once the old job has slid out: one pass, then the thread ends again.
    const started = thread(true);
    writer.summary(at(25));
    await started;
    ended = thread(false);
    await ended;
    expect(writer.summary(at(25))).toMatchObject({ today: { served: 1 }, last_7_days: { served: 1 } });
    expect(threads).toEqual([true, false, true, false, true, false]);
  });

  it("holds a GPU machine's energy periods while idle: no thread for them; they go with the next record, or after their quarter hour", async () => {
    const { writer, path, threads, thread } = await setup({ periodsHeldMs: 60 });
    let ended = thread(false);
    await writer.prune(400);
    await ended;
    // A poll every few seconds on a GPU machine (plugin-gpu's watch): written as they came, each one
    // started the thread and restarted its linger, so it never ended.
    const t0 = Date.now() - 60_000;
    const poll = (i: number) =>
      writer.period({ from: t0 + i * 5_000, to: t0 + (i + 1) * 5_000, servingWh: 0, idleWh: 1 });
    for (let i = 0; i < 3; i++) poll(i);
    expect(writer.threadRunning).toBe(false);
    // The next record carries them.
    await writer.write([job()]);
    expect(idleWh(path)).toBeCloseTo(3, 6);
    ended = thread(false);
    await ended;
    // Alone, they wait their quarter hour (here 60 ms), then are written.
    const started = thread(true);
    for (let i = 3; i < 5; i++) poll(i);
    expect(writer.threadRunning).toBe(false);
    await started;
    ended = thread(false);
    await ended;
    expect(idleWh(path)).toBeCloseTo(5, 6);
    // And a close writes what is held.
    poll(5);
    await writer.close();
    expect(idleWh(path)).toBeCloseTo(6, 6);
    expect(threads).toEqual([true, false, true, false, true, false, true, false]);
  });
});

describe("a job's energy told before its record", () => {
  it('is kept for the record and written on its row (the GPU plugin may settle a job in its own job_end event, before the journal writes)', async () => {
    const { writer, path } = await setup();
    // The executor tells job_end, then journals the record on the next turn: a poll in the job's last
    // millisecond lets the GPU plugin tell the energy in between (attribution.ts, `ended`).
    const a = job();
    const refused = job({ outcome: 'error', refusal: 'paused' });
    writer.energy(a.jobId, 0.25);
    writer.energy(refused.jobId, 0.5);
    // A job never recorded: held, bounded, never written anywhere.
    writer.energy('job-never', 1);
    await writer.write([a, refused]);
    await writer.close();
    expect(energyOf(path)).toEqual({ [a.jobId]: 0.25, [refused.jobId]: null });
  });
});

/** Each job's energy_wh in the file. */
const energyOf = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db.prepare('SELECT job_id, energy_wh FROM jobs').all() as {
      job_id: string;
      energy_wh: number | null;
    }[];
    return Object.fromEntries(rows.map((r) => [r.job_id, r.energy_wh]));
  } finally {
    db.close();
  }
};

/** The idle energy the file holds, Wh. */
const idleWh = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT coalesce(sum(idle_wh), 0) FROM energy').pluck().get() as number;
  } finally {
    db.close();
  }
};

describe('a ledger another process holds locked', () => {
  it('is still read: the counters resume from it and status has its figures; only the write waits and fails', async () => {
    const { writer, path } = await setup({ busyMs: 300 });
    await writer.write([job(), job({ outcome: 'error', refusal: 'paused' })]);
    await writer.close();
    // `sqlite3 ledger.db` with a transaction open, or a backup tool: a write lock held in another process.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const db = new (require('better-sqlite3'))(process.argv[1]);
         db.exec('BEGIN IMMEDIATE'); db.prepare("DELETE FROM selftests").run();
         console.log('held'); process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`,
        path,
      ],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['pipe', 'pipe', 'inherit'] },
    );
    cleanup.push(async () => {
      holder.stdin!.end();
      if (holder.exitCode === null) await once(holder, 'exit');
    });
    const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
    expect(line.toString()).toContain('held');
    const { writer: again, notices } = await setup({ busyMs: 300, file: () => path });
    expect((await again.totals(Date.now() + 1)).reduce((n, g) => n + g.jobs, 0)).toBe(2);
    await again.refreshSummary();
    expect(again.summary()?.today).toMatchObject({ served: 1, missed: 1 });
    expect(again.failing).toBeUndefined();
    await again.write([job()]);
    expect(again.failing).toMatch(/locked/);
    expect(notices).toHaveLength(1);
  });
});

describe('a ledger thread that does not answer (a disk that hangs)', () => {
  it('lets the frames go after answerMs, says it once, keeps the records bounded, and writes each once when it answers', async () => {
    const { writer, path, notices, recovered } = await setup({
      busyMs: 3_600_000,
      answerMs: 200,
      maxPending: 3,
    });
    Ledger.open(path).close();
    // The thread's writes wait (for a lock another connection holds, up to busyMs: an hour), and what is
    // asked after them waits behind them, as on a disk that does not answer.
    const other = new Database(path);
    cleanup.push(async () => void (other.open && other.close()));
    other.exec('BEGIN IMMEDIATE');
    other.prepare('DELETE FROM selftests').run();
    const a = job();
    // Its frames waited core's 10 s, and every later batch's too, for as long as the disk hung.
    await writer.write([a]);
    expect(writer.failing).toMatch(/has not answered in 0.2 s/);
    // Later records do not wait; past maxPending (3, the one in the thread included) they are dropped.
    const later = [job(), job(), job()];
    for (const r of later) await writer.write([r]);
    expect(writer.pending).toBe(3);
    // The counters' totals and status' figures (the agent's start waits for them) do not wait either.
    expect(await writer.totals(Date.now() + 1)).toEqual([]);
    await writer.refreshSummary();
    expect(notices.filter((n) => !n.resolved)).toHaveLength(1);
    other.exec('COMMIT');
    other.close();
    await recovered;
    await writer.close();
    expect(ids(path)).toEqual([a.jobId, later[0]!.jobId, later[1]!.jobId]);
  });
});
