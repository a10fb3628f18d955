import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEvent } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, holdsPlugin, VllmEmulator } from '@usepod-agent/testkit';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import ledgerPlugin, { earnings, Ledger, type LedgerPluginOptions, ledgerChecks } from './index.js';

/**
 * The ledger plugin in-process (issue 28): a real SQLite file written by its worker thread, the testkit's
 * coordinator and vLLM emulator. Each test waits on frames and events, never on time.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const MODEL = 'Qwen/Qwen3-14B';

async function setup(
  o: { plugin?: LedgerPluginOptions; file?: (dir: string) => string; limits?: object } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'usepod-ledger-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = o.file ? o.file(dir) : join(dir, 'ledger.db');
  const engine = await new VllmEmulator({ defaultTokens: 8 }).start();
  cleanup.push(() => engine.close());
  const holds = holdsPlugin();
  const t = await createTestAgent({
    plugins: [ledgerPlugin({ retryMs: 20, ...o.plugin }), vllmPlugin, holds.plugin],
    defaultPlugins: false,
    logLevel: 'info',
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      ledger: { path: file },
      ...(o.limits ? { limits: o.limits } : {}),
    } as never,
  });
  cleanup.push(() => t.close());
  const events: AgentEvent[] = [];
  const waiters: { match: (e: AgentEvent) => boolean; resolve: (e: AgentEvent) => void }[] = [];
  t.agent.on('notice', (e) => {
    events.push(e);
    for (const w of waiters.splice(0)) {
      if (w.match(e)) w.resolve(e);
      else waiters.push(w);
    }
  });
  /** The next (or a past) notice that matches. */
  const notice = (match: (e: Extract<AgentEvent, { type: 'notice' }>) => boolean) =>
    new Promise<AgentEvent>((resolve) => {
      const m = match as (e: AgentEvent) => boolean;
      const seen = events.find(m);
      if (seen) resolve(seen);
      else waiters.push({ match: m, resolve });
    });
  return { t, engine, file, dir, holds, notice, events };
}

async function online(t: Awaited<ReturnType<typeof setup>>['t']) {
  expect((await t.start()).ok).toBe(true);
  const session = await t.coordinator.firstAuthenticated();
  await session.capabilities();
  return session;
}

const rows = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT job_id, model, outcome, refusal FROM jobs ORDER BY received_at').all() as {
      job_id: string;
      model: string;
      outcome: string;
      refusal: string | null;
    }[];
  } finally {
    db.close();
  }
};

const metric = async (t: { agent: { metricsText(): Promise<string> } }, name: string) => {
  const line = (await t.agent.metricsText()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

describe('the ledger plugin', () => {
  it('records each job before its terminal frame; a job refused while paused is missed in earnings, /status and doctor', async () => {
    const { t, file } = await setup();
    const session = await online(t);
    t.agent.pause({ reason: 'lunch' });
    expect(await session.dispatch({ model_id: MODEL }).done()).toMatchObject({
      error_code: 'out_of_capacity',
    });
    const back = session.nextFrame('capabilities');
    t.agent.resume();
    await back;
    const served = session.dispatch({ model_id: MODEL });
    expect((await served.done()).type).toBe('job_done');
    // The terminal frame left after the commit: the row is there as soon as the coordinator heard.
    expect(rows(file).map((r) => [r.outcome, r.refusal])).toEqual([
      ['error', 'paused'],
      ['done', null],
    ]);
    const ledger = Ledger.open(file, { readonly: true });
    try {
      expect(earnings(ledger, { since: 0, by: 'model' })).toMatchObject([
        { group: MODEL, served: 1, missed: 1, failed: 0 },
      ]);
    } finally {
      ledger.close();
    }
    expect(t.agent.status().jobs).toMatchObject({ served: 1, missed: 1, failed: 0 });
    // The status section: summed once at start, then each committed record added.
    expect(t.agent.status().sections.ledger).toMatchObject({
      today: { served: 1, missed: 1, failed: 0 },
      last_7_days: { served: 1, missed: 1, failed: 0 },
    });
    const doctor = await ledgerChecks(file, t.agent.config, { engineCapacity: undefined });
    expect(doctor.find((c) => c.name === 'missed: paused')).toMatchObject({
      level: 'warn',
      detail: '1 job(s) refused in 24 h while the agent was paused',
    });
  });

  it('keeps relaying other streams while another connection holds the ledger locked', async () => {
    const { t, engine, file } = await setup({ plugin: { busyMs: 60_000 } });
    const session = await online(t);
    expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    // A backup tool, `sqlite3` open by the operator: a write transaction held on another connection.
    const other = new Database(file);
    cleanup.push(async () => void (other.open && other.close()));
    other.exec('BEGIN IMMEDIATE');
    engine.behave({ kind: 'controlled' }, { times: 1 });
    const streaming = session.dispatch({ model_id: MODEL });
    const stream = await engine.controlled.waitFor(() => true);
    const ended = new Promise<void>((resolve) =>
      t.agent.on('job_end', (e) => {
        if (e.job.outcome === 'done') resolve();
      }),
    );
    const short = session.dispatch({ model_id: MODEL });
    // Its record waits for the lock in the ledger's thread...
    await ended;
    // ...while this thread relays the other job's chunks and answers.
    const chunk = (text: string) =>
      session.frames.waitFor(
        (f) =>
          f.type === 'job_chunk' &&
          f.job_id === streaming.jobId &&
          Buffer.from(String(f.data), 'base64').toString().includes(text),
      );
    await stream.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n');
    await chunk('"a"');
    await stream.write('data: {"choices":[{"delta":{"content":"b"}}]}\n\n');
    await chunk('"b"');
    expect(t.agent.status().state).toBe('online');
    expect(short.terminal).toBeUndefined();
    other.exec('COMMIT');
    other.close();
    expect((await short.done()).type).toBe('job_done');
    stream.end('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    expect((await streaming.done()).type).toBe('job_done');
    expect(rows(file)).toHaveLength(3);
  });

  it('starts and serves on when the ledger’s thread never answers (a hung disk): said once, frames do not wait, its records are written once it answers', async () => {
    const { t, file, notice } = await setup({ plugin: { busyMs: 3_600_000, answerMs: 300 } });
    Ledger.open(file).close();
    // A disk that does not answer, as the thread sees it: every statement waits (here for a lock another
    // connection holds, readers locked out too, up to busyMs: an hour), and terminate() cannot end it.
    const other = new Database(file);
    cleanup.push(async () => void (other.open && other.close()));
    other.pragma('locking_mode = EXCLUSIVE');
    other.exec('BEGIN EXCLUSIVE');
    other.prepare('DELETE FROM selftests').run();
    // The start waits for the counters' totals, the retention and status' figures: it waited for good.
    const session = await online(t);
    for (let i = 0; i < 3; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    await notice((e) => e.name === 'ledger_failing' && !e.resolved);
    const warnings = t.lines.filter((l) => l.startsWith('warn') && l.includes('has not answered'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(t.agent.status().sections.ledger).toMatchObject({ pending: 3 });
    // The disk answers again: the records are written, each once, and the notice resolves.
    other.exec('COMMIT');
    other.close();
    await notice((e) => e.name === 'ledger_failing' && e.resolved);
    await t.stop();
    expect(rows(file)).toHaveLength(3);
  });

  it('serves on when the ledger cannot be opened: one warning naming the file, a notice, a metric, then writes again', async () => {
    // The path is a directory: SQLite cannot open it.
    const { t, file, notice } = await setup({ file: (d) => join(d, 'taken') });
    await mkdir(file);
    const session = await online(t);
    for (let i = 0; i < 3; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    await notice((e) => e.name === 'ledger_failing' && !e.resolved);
    const warnings = t.lines.filter((l) => l.startsWith('warn') && l.includes('cannot be written'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(warnings[0]).toContain('USEPOD_LEDGER');
    expect(await metric(t, 'usepod_agent_ledger_write_failures_total')).toBeGreaterThan(0);
    expect(await metric(t, 'usepod_agent_ledger_pending')).toBe(3);
    // The operator fixes it: the kept records are written, and the notice resolves.
    await rm(file, { recursive: true });
    await notice((e) => e.name === 'ledger_failing' && e.resolved);
    expect(rows(file)).toHaveLength(3);
    expect(await metric(t, 'usepod_agent_ledger_pending')).toBe(0);
  });

  it('serves on when the ledger is full (SQLITE_FULL): a warning, a notice, retries, then writes again once there is room', async () => {
    // A ledger whose file may not grow (max_page_count: the disk is full as far as SQLite can tell),
    // already holding a few thousand rows the operator can delete.
    const dir = await mkdtemp(join(tmpdir(), 'usepod-ledger-full-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'ledger.db');
    const seed = Ledger.open(path);
    seed.write(
      Array.from({ length: 3000 }, (_, i) => ({
        jobId: `old-${i}`.padEnd(200, 'x'),
        model: 'old',
        backend: 'vllm',
        outcome: 'done' as const,
        inputTokens: 1,
        outputTokens: 1,
        bytes: 1,
        durationMs: 1,
        firstByteMs: undefined,
        receivedAt: Date.now() - 86_400_000 - i,
        format: 'openai' as const,
        inputPer1m: undefined,
        outputPer1m: undefined,
      })),
    );
    seed.close();
    // Filled to the last page another connection may use: a new row needs a page the cap refuses.
    const probe = new Database(path);
    const pages = (probe.pragma('page_count', { simple: true }) as number) + 20;
    probe.pragma(`max_page_count = ${pages}`);
    const filler = probe.prepare(
      `INSERT INTO jobs (job_id, model, format, received_at, duration_ms, outcome, input_tokens, output_tokens,
         bytes, earnings_micro) VALUES (?, 'old', 'openai', ?, 0, 'done', 0, 0, 0, 0)`,
    );
    // A day old: within the retention, so the prune at start frees nothing.
    expect(() => {
      for (let i = 0; ; i++) filler.run(`fill-${i}`.padEnd(300, 'x'), Date.now() - 86_400_000);
    }).toThrow(/full/);
    probe.pragma('wal_checkpoint(TRUNCATE)');
    probe.close();
    const { t, file, notice } = await setup({ file: () => path, plugin: { maxPages: pages } });
    const session = await online(t);
    for (let i = 0; i < 3; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    await notice((e) => e.name === 'ledger_failing' && !e.resolved);
    const warnings = t.lines.filter((l) => l.startsWith('warn') && l.includes('cannot be written'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(warnings[0]).toContain('SQLITE_FULL');
    // Retried with backoff while full, each failure counted; jobs keep being served meanwhile.
    await vi.waitFor(
      async () => expect(await metric(t, 'usepod_agent_ledger_write_failures_total')).toBeGreaterThan(1),
      { timeout: 10_000 }, // vi.waitFor's own 1 s is short for retries on a loaded VM
    );
    expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    // (A record may have fitted in the last page before the file was full.)
    const kept = (await metric(t, 'usepod_agent_ledger_pending'))!;
    expect(kept).toBeGreaterThan(0);
    expect(rows(file).filter((r) => r.model === MODEL)).toHaveLength(4 - kept);
    // The operator makes room: the kept records are written at the next retry, and the notice resolves.
    const other = new Database(path);
    other.exec("DELETE FROM jobs WHERE model = 'old'");
    other.close();
    await notice((e) => e.name === 'ledger_failing' && e.resolved);
    expect(rows(file).filter((r) => r.model === MODEL)).toHaveLength(4);
    expect(await metric(t, 'usepod_agent_ledger_pending')).toBe(0);
  });

  it('serves on when the ledger’s folder cannot be written (a file where the folder should be): warning, notice, retries, then writes', async () => {
    // chmod 0555 does not stop root: a path under a regular file fails for everyone (ENOTDIR).
    const { t, file, notice, dir } = await setup({ file: (d) => join(d, 'state', 'ledger.db') });
    await writeFile(join(dir, 'state'), 'not a folder');
    const session = await online(t);
    for (let i = 0; i < 2; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    await notice((e) => e.name === 'ledger_failing' && !e.resolved);
    const warnings = t.lines.filter((l) => l.startsWith('warn') && l.includes('cannot be written'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    await vi.waitFor(
      async () => expect(await metric(t, 'usepod_agent_ledger_write_failures_total')).toBeGreaterThan(1),
      { timeout: 10_000 }, // vi.waitFor's own 1 s is short for retries on a loaded VM
    );
    expect(await metric(t, 'usepod_agent_ledger_pending')).toBe(2);
    await rm(join(dir, 'state'));
    await notice((e) => e.name === 'ledger_failing' && e.resolved);
    expect(rows(file)).toHaveLength(2);
  });

  it('keeps at most maxPending records while failing: the rest are counted and dropped, said once', async () => {
    const { t, file, notice } = await setup({ file: (d) => join(d, 'taken'), plugin: { maxPending: 2 } });
    await mkdir(file);
    const session = await online(t);
    for (let i = 0; i < 5; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    expect(await metric(t, 'usepod_agent_ledger_dropped_total')).toBe(3);
    expect(t.lines.filter((l) => l.includes('records are dropped'))).toHaveLength(1);
    await rm(file, { recursive: true });
    await notice((e) => e.name === 'ledger_failing' && e.resolved);
    expect(rows(file)).toHaveLength(2);
  });

  it('ends its thread once the start-up work is done and the agent is idle; a job start warms it again', async () => {
    const threads: boolean[] = [];
    let next: { running: boolean; resolve: () => void } | undefined;
    const thread = (running: boolean) => new Promise<void>((resolve) => (next = { running, resolve }));
    const onThread = (running: boolean) => {
      threads.push(running);
      if (next?.running === running) next.resolve();
    };
    const { t, engine, file } = await setup({ plugin: { lingerMs: 50, onThread } });
    const session = await online(t);
    // Totals, retention and the status figures at start (the thread may end between them when the
    // engine's probe outlasts the linger), then the linger: no thread while idle.
    if (threads.at(-1) !== false) await thread(false);
    expect(t.agent.status().sections.ledger).toMatchObject({ today: { served: 0 }, recording: true });
    const before = threads.length;
    engine.behave({ kind: 'controlled' }, { times: 1 });
    const job = session.dispatch({ model_id: MODEL });
    const stream = await engine.controlled.waitFor(() => true);
    // The job is running, its record not yet written: the thread was started by the job's start.
    expect(threads.slice(before)).toEqual([true]);
    const ended = thread(false);
    stream.end('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    expect((await job.done()).type).toBe('job_done');
    expect(rows(file)).toHaveLength(1);
    await ended;
    expect(t.agent.status().sections.ledger).toMatchObject({ today: { served: 1 } });
  });

  it('leaves a ledger from a newer agent as it is, warns once, and serves without recording', async () => {
    const { t, file } = await setup();
    const db = new Database(file);
    db.exec('CREATE TABLE jobs (x); PRAGMA user_version = 99;');
    db.close();
    const before = await readFile(file);
    const session = await online(t);
    for (let i = 0; i < 2; i++)
      expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    const warned = t.lines.filter((l) => l.includes('schema version 99'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/newer than this agent knows.*USEPOD_LEDGER/);
    await t.stop();
    expect((await readFile(file)).equals(before)).toBe(true);
    expect(t.agent.status().sections.ledger).toMatchObject({ recording: false });
  });

  it('a ledger made but never written (the disk was full at its first write) is said so to a reader, not called older', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-ledger-empty-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'ledger.db');
    // What the agent leaves on a full disk: the 0600 file it makes first, and no schema in it.
    await writeFile(path, '');
    expect(() => Ledger.open(path, { readonly: true })).toThrow(
      `the ledger ${path} holds nothing yet: the agent made it but could not write it (a full disk? its log says why)`,
    );
    // Once the agent can write, it is a ledger like any other.
    Ledger.open(path).close();
    Ledger.open(path, { readonly: true }).close();
  });
});
