import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobRecord, SelfTestResult } from '@usepod-agent/core';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledgerChecks } from './doctor.js';
import { earnings, earningsCsv, earningsReport, GROUPINGS, type Grouping } from './earnings.js';
import { Ledger } from './ledger.js';
import { selftestHistory } from './selftests.js';
import { type LedgerSeries, ledgerSeries } from './series.js';
import { ledgerReader } from './thread.js';
import type { WorkerReply } from './worker.js';

/**
 * The SQL aggregates (issue 28) give what the JavaScript grouping they replace gave, on a few thousand
 * rows of every kind: the reference below is that code (rows read with .all(), grouped in a Map), with a
 * refusal of any kind but `malformed` counted missed.
 */
const NOW = Date.UTC(2026, 11, 6, 12);
const REFUSALS = ['paused', 'max_concurrent', 'token_budget', 'draining', 'model_not_loaded', 'malformed'];

/** A deterministic pseudo-random sequence (mulberry32): the same rows on every run. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function records(n: number): JobRecord[] {
  const r = rng(7);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  return Array.from({ length: n }, (_, i): JobRecord => {
    const kind = r();
    const receivedAt = NOW - Math.floor(r() * 9 * 86_400_000);
    const durationMs = kind < 0.2 ? 0 : Math.floor(r() * 120_000);
    const refusal = kind < 0.2 ? (pick(REFUSALS) as JobRecord['refusal']) : undefined;
    const outcome = refusal ? 'error' : kind < 0.8 ? 'done' : kind < 0.9 ? 'error' : 'cancelled';
    return {
      jobId: `j${i}`,
      model: pick(['m-a', 'm-b', 'M-c', '=cmd', 'zz']),
      backend: refusal ? undefined : pick(['vllm', 'ollama', undefined]),
      outcome,
      ...(outcome === 'error' ? { errorCode: refusal ? 'out_of_capacity' : 'job_error' } : {}),
      inputTokens: refusal ? 0 : Math.floor(r() * 2000),
      outputTokens: refusal ? 0 : Math.floor(r() * 800),
      bytes: Math.floor(r() * 10_000),
      durationMs,
      firstByteMs: durationMs > 0 && r() < 0.9 ? Math.floor(r() * durationMs) : undefined,
      receivedAt,
      format: 'openai',
      inputPer1m: r() < 0.9 ? 100_000 : undefined,
      outputPer1m: 400_000,
      ...(refusal ? { refusal } : {}),
    };
  });
}

let seq = 0;
/** One job at NOW, served by default. */
const oneJob = (o: Partial<JobRecord>): JobRecord => ({
  jobId: `s${++seq}`,
  model: 'm',
  backend: 'vllm',
  outcome: 'done',
  inputTokens: 0,
  outputTokens: 0,
  bytes: 0,
  durationMs: 0,
  firstByteMs: undefined,
  receivedAt: NOW - 60_000,
  format: 'openai',
  inputPer1m: undefined,
  outputPer1m: undefined,
  ...o,
});

function tests(n: number): SelfTestResult[] {
  const r = rng(11);
  return Array.from({ length: n }, (_, i) => {
    const ok = r() < 0.8;
    return {
      backend: i % 3 === 0 ? 'vllm' : 'ollama',
      model: i % 2 === 0 ? 'm-a' : 'm-b',
      at: new Date(NOW - Math.floor(r() * 5 * 86_400_000)).toISOString(),
      ok,
      ttftMs: r() * 500,
      tokensPerSecond: r() * 100,
      tokens: 16,
      ...(ok ? {} : { error: `failed ${i}` }),
    } as SelfTestResult;
  });
}

let dir: string;
let ledger: Ledger;
const jobs = records(4000);
const selftests = tests(300);
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-ledger-sql-'));
  ledger = Ledger.open(join(dir, 'ledger.db'));
  ledger.write(jobs, selftests);
});
afterAll(async () => {
  ledger.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the ledger’s SQL aggregates', () => {
  it.each(GROUPINGS)('earnings by %s equal the JavaScript grouping they replace', (by) => {
    const since = NOW - 7 * 86_400_000;
    const got = earnings(ledger, { since, by, now: NOW });
    const want = reference(jobs, since, by, NOW);
    expect(got.map((r) => r.group)).toEqual(want.map((r) => r.group));
    for (const [i, w] of want.entries()) {
      const g = got[i]!;
      expect({ ...g, earnings_usdc: 0, tokens_per_sec: 0, busy: 0 }).toMatchObject({
        ...w,
        earnings_usdc: 0,
        tokens_per_sec: 0,
        busy: 0,
      });
      expect(g.earnings_usdc).toBeCloseTo(w.earnings_usdc, 9);
      expect(g.tokens_per_sec ?? -1).toBeCloseTo(w.tokens_per_sec ?? -1, 6);
      expect(g.busy).toBeCloseTo(w.busy, 9);
    }
  });

  it('groups by local day and hour across a change of daylight saving time', () => {
    const zone = process.env.TZ;
    process.env.TZ = 'Europe/Paris';
    const d = join(dir, 'dst.db');
    const l = Ledger.open(d);
    try {
      // Paris leaves summer time on 2026-10-25 at 03:00 (01:00 UTC): rows each 10 minutes around it.
      const start = Date.UTC(2026, 9, 24, 20);
      const rs = Array.from({ length: 60 }, (_, i) => ({
        ...jobs[i]!,
        receivedAt: start + i * 600_000,
        durationMs: 900_000,
      }));
      l.write(rs);
      for (const by of ['day', 'hour'] as const) {
        const got = earnings(l, { since: start, by, now: start + 36_000_000 });
        const want = reference(rs, start, by, start + 36_000_000);
        expect(got.map((r) => [r.group, r.served + r.failed + r.missed + r.cancelled])).toEqual(
          want.map((r) => [r.group, r.served + r.failed + r.missed + r.cancelled]),
        );
        for (const [i, w] of want.entries()) expect(got[i]!.busy).toBeCloseTo(w.busy, 9);
      }
    } finally {
      l.close();
      process.env.TZ = zone;
      if (zone === undefined) delete process.env.TZ;
    }
  });

  it('status sums today and the last 7 days in one query, as earnings does', () => {
    const today = Date.UTC(2026, 11, 6);
    const week = NOW - 7 * 86_400_000;
    const s = ledger.summary(today, week);
    const total = (since: number) =>
      reference(jobs, since, 'backend', NOW).reduce(
        (t, r) => ({
          served: t.served + r.served,
          missed: t.missed + r.missed,
          failed: t.failed + r.failed,
          earnings_usdc: t.earnings_usdc + r.earnings_usdc,
        }),
        { served: 0, missed: 0, failed: 0, earnings_usdc: 0 },
      );
    for (const [got, want] of [
      [s.today, total(today)],
      [s.last_7_days, total(week)],
    ] as const) {
      expect({ ...got, earnings_usdc: 0 }).toEqual({ ...want, earnings_usdc: 0 });
      expect(got.earnings_usdc).toBeCloseTo(want.earnings_usdc, 9);
    }
  });

  it('self-test history: counts and nearest-rank percentiles equal the JavaScript ones', () => {
    const since = NOW - 3 * 86_400_000;
    expect(selftestHistory(ledger, { since })).toEqual(referenceHistory(selftests, since));
    expect(selftestHistory(ledger, { since, model: 'm-b' })).toEqual(
      referenceHistory(
        selftests.filter((t) => t.model === 'm-b'),
        since,
      ),
    );
  });

  it('writes CSV with fixed decimals whatever the locale, and formulas as text', () => {
    const csv = earningsCsv(earnings(ledger, { since: 0, by: 'model', now: NOW }));
    const lines = csv.trim().split('\n');
    expect(lines[0]).toBe(
      'group,served,failed,missed,cancelled,input_tokens,output_tokens,earnings_usdc,tokens_per_sec,busy,energy_kwh,idle_kwh,energy_cost_usdc,net_usdc,usdc_per_kwh',
    );
    // No energy in this ledger: its columns are empty, never 0.
    for (const l of lines.slice(1))
      expect(l).toMatch(/^("?'?[=\w-]+"?)(,\d+){6},\d+\.\d{6},(\d+\.\d)?,\d\.\d{4},,,,,$/);
    expect(csv).toContain("'=cmd,");
    expect(csv).not.toMatch(/e-\d/);
  });
});

/** Jobs of a few hours, received in any order, some running for hours (across many quarter hours). */
const BASE = Date.UTC(2026, 9, 24, 22, 7, 13);
const job = fc.record({
  at: fc.integer({ min: 0, max: 8 * 3_600_000 }),
  duration: fc.oneof(
    fc.constant(0),
    fc.integer({ min: 1, max: 600_000 }),
    fc.integer({ min: 1, max: 3 * 3_600_000 }),
  ),
  model: fc.constantFrom('m-a', 'm-b', '=x'),
  backend: fc.constantFrom('vllm', 'ollama', undefined),
  kind: fc.constantFrom('done', 'error', 'cancelled', 'paused', 'malformed', 'model_not_loaded'),
  tokens: fc.nat(5000),
  firstByte: fc.option(fc.nat(100_000), { nil: undefined }),
});
type JobArb = typeof job extends fc.Arbitrary<infer T> ? T : never;
const ledgerRecords = (xs: JobArb[]): JobRecord[] =>
  xs.map((x, i) => {
    const refusal = ['paused', 'malformed', 'model_not_loaded'].includes(x.kind) ? x.kind : undefined;
    const outcome = refusal ? 'error' : (x.kind as JobRecord['outcome']);
    return {
      jobId: `p${i}`,
      model: x.model,
      backend: refusal ? undefined : x.backend,
      outcome,
      inputTokens: x.tokens,
      outputTokens: Math.floor(x.tokens / 3),
      bytes: 10,
      durationMs: refusal ? 0 : x.duration,
      firstByteMs: x.firstByte,
      receivedAt: BASE + x.at,
      format: 'openai',
      inputPer1m: 100_000,
      outputPer1m: 400_000,
      ...(refusal ? { refusal: refusal as JobRecord['refusal'] } : {}),
    };
  });

function expectSame(l: Ledger, rs: JobRecord[], since: number, by: Grouping, now: number) {
  const got = earnings(l, { since, by, now });
  const want = reference(rs, since, by, now);
  expect(got.map((r) => r.group)).toEqual(want.map((r) => r.group));
  for (const [i, w] of want.entries()) {
    const g = got[i]!;
    expect({ ...g, earnings_usdc: 0, tokens_per_sec: 0, busy: 0 }).toMatchObject({
      ...w,
      earnings_usdc: 0,
      tokens_per_sec: 0,
      busy: 0,
    });
    expect(g.earnings_usdc).toBeCloseTo(w.earnings_usdc, 9);
    expect(g.tokens_per_sec ?? -1).toBeCloseTo(w.tokens_per_sec ?? -1, 6);
    expect(g.busy).toBeCloseTo(w.busy, 9);
  }
}

/**
 * A ledger holding `served` models that earned 1,000 × (i+1) micro-USDC each, and 5,000 jobs refused for
 * model ids the coordinator named (each its own): what ids a hostile coordinator can make the ledger keep.
 */
async function withManyModelIds(
  served: number,
  fn: (l: Ledger, served: ReturnType<typeof oneJob>[], file: string) => void,
): Promise<void> {
  const d = await mkdtemp(join(tmpdir(), 'usepod-ledger-ids-'));
  const file = join(d, 'ledger.db');
  const l = Ledger.open(file);
  try {
    const jobs = Array.from({ length: served }, (_, i) =>
      oneJob({ model: `served-${i}`, inputTokens: 1_000 * (i + 1), inputPer1m: 1_000_000, outputPer1m: 0 }),
    );
    // Jobs for models no engine here has: refused, each id the coordinator's own.
    const asked = Array.from({ length: 5_000 }, (_, i) =>
      oneJob({
        model: `evil/${i}`,
        outcome: 'error',
        errorCode: 'model_not_loaded',
        refusal: 'model_not_loaded',
      }),
    );
    l.write([...jobs, ...asked]);
    fn(l, jobs, file);
  } finally {
    l.close();
    await rm(d, { recursive: true, force: true });
  }
}

describe('the dashboard’s models when the coordinator named a model id per job', () => {
  it('are the 20 that earned most, chosen in SQL: the other ids never reach JavaScript', async () => {
    await withManyModelIds(30, (l) => {
      const since = NOW - 30 * 86_400_000;
      const all = earnings(l, { since, by: 'model', now: NOW });
      expect(all).toHaveLength(5_030);
      const top = earnings(l, { since, by: 'model', now: NOW, top: 20 });
      expect(top).toEqual(all.slice(0, 20));
      expect(ledgerSeries(l, NOW).by_model.map((m) => m.group)).toEqual(top.map((m) => m.group));
    });
  });
});

describe('earnings, doctor and the dashboard when the coordinator named a model id per job', () => {
  const config = {
    limits: { max_concurrent: 4, max_request_bytes: 1 },
    energy: { price_per_kwh: 0.25 },
  } as unknown as Parameters<typeof ledgerChecks>[1];

  it('earnings lists the models that earned most, chosen in SQL, and sums the rest as one: the totals stay whole', async () => {
    await withManyModelIds(30, (l) => {
      const since = NOW - 30 * 86_400_000;
      const whole = earningsReport(l, { since, by: 'model', now: NOW });
      expect(whole.rows).toHaveLength(5_030);
      expect(whole.more).toBeNull();
      const cut = earningsReport(l, { since, by: 'model', now: NOW, top: 10 });
      expect(cut.rows).toEqual(whole.rows.slice(0, 10));
      expect(cut.more).toMatchObject({ groups: 5_020, served: 20, missed: 5_000, failed: 0 });
      expect(cut.more!.earnings_usdc).toBeCloseTo((20 * 21 * 1_000) / 2 / 1e6, 12);
      expect(cut.totals).toEqual({
        ...whole.totals,
        earnings_usdc: expect.closeTo(whole.totals.earnings_usdc, 12),
      });
      // As a spreadsheet: the rest is one row, and the columns add up to the totals.
      const csv = earningsCsv(cut.rows, cut.more, 'model').trim().split('\n');
      expect(csv).toHaveLength(12);
      expect(csv.at(-1)).toBe('(5020 more models),20,0,5000,0,210000,0,0.210000,,,,,,,');
    });
  });

  it('doctor names the 5 most missed model ids (folded) and says how many more, with every refusal counted whole', async () => {
    await withManyModelIds(0, (l, _served, file) => {
      // 3,000 ids refused while paused, each once: the count was summed over the first 1,000 lines.
      l.write(
        Array.from({ length: 3_000 }, (_, i) =>
          oneJob({
            model: `p\u001b]0;x\u0007/${i}`,
            outcome: 'error',
            errorCode: 'out_of_capacity',
            refusal: 'paused',
          }),
        ),
      );
      l.write(
        Array.from({ length: 2 }, () =>
          oneJob({
            model: 'evil/\u001b[2J',
            outcome: 'error',
            errorCode: 'model_not_loaded',
            refusal: 'model_not_loaded',
          }),
        ),
      );
      const checks = ledgerChecks(file, config, { engineCapacity: undefined }, NOW);
      expect(checks.find((c) => c.name === 'missed: paused')?.detail).toBe(
        '3000 job(s) refused in 24 h while the agent was paused',
      );
      const models = checks.filter((c) => c.name === 'missed: model');
      expect(models.map((c) => c.detail)).toEqual([
        '2 job(s) in 24 h asked for evil/ [2J, which no engine here serves',
        '1 job(s) in 24 h asked for evil/0, which no engine here serves',
        '1 job(s) in 24 h asked for evil/1, which no engine here serves',
        '1 job(s) in 24 h asked for evil/10, which no engine here serves',
        '1 job(s) in 24 h asked for evil/100, which no engine here serves',
        'and 4996 job(s) in 24 h for 4996 more model(s) no engine here serves',
      ]);
      // The dashboard's reader gives the same rows: its lines are these.
      expect(ledgerSeries(l, NOW).missed).toEqual(l.missed(NOW - 86_400_000));
      expect(l.missed(NOW - 86_400_000).length).toBeLessThanOrEqual(12);
    });
  });

  it('doctor compares the energy of the models that have some, past thousands of ids that earned nothing, and says how many more lose', async () => {
    await withManyModelIds(0, (l, _served, file) => {
      // Eight served models at 0.5 kWh each, none earning its energy (0.125 USDC at 0.25 per kWh); the
      // last earns nothing at all, as the 5,000 refused ids do.
      const served = Array.from({ length: 8 }, (_, i) =>
        oneJob({
          model: `m${i}`,
          outputTokens: 1_000,
          outputPer1m: i === 7 ? 0 : (8 - i) * 10_000,
          inputPer1m: 0,
        }),
      );
      l.write(served, [], {
        jobs: served.map((j) => ({ jobId: j.jobId, receivedAt: j.receivedAt, wh: 500 })),
      });
      const energy = ledgerChecks(file, config, { engineCapacity: undefined }, NOW).filter(
        (c) => c.name === 'energy',
      );
      expect(energy.map((c) => c.detail.split(' ')[0])).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'and']);
      expect(energy.at(-1)).toMatchObject({
        level: 'warn',
        detail: 'and 3 more model(s) under their energy cost in 7 days',
      });
      const report = earningsReport(l, {
        since: NOW - 7 * 86_400_000,
        by: 'model',
        now: NOW,
        top: 100,
        measured: true,
      });
      expect(report.rows.map((r) => r.group)).toEqual(served.map((j) => j.model));
    });
  });
});

describe('doctor’s last job', () => {
  it('never reads as served a negative time ago: a row received while the clock was ahead (set back since)', async () => {
    await withManyModelIds(1, (l, served, file) => {
      l.write([oneJob({ receivedAt: NOW + 3_600_000 })]);
      const checks = ledgerChecks(
        file,
        { limits: { max_concurrent: 4 } } as never,
        { engineCapacity: undefined },
        NOW,
      );
      expect(checks.find((c) => c.name === 'last job')).toMatchObject({
        level: 'ok',
        detail: 'served 0 min ago',
      });
      expect(served).toHaveLength(1);
    });
  });
});

describe('the counters’ start (seedGroups)', () => {
  it('keeps the top 100 earning models by name and sums the rest as other, in a few groups however many ids the coordinator sent', async () => {
    await withManyModelIds(120, (l, served) => {
      const groups = l.seedGroups(NOW + 1);
      expect(groups.length).toBeLessThanOrEqual(102);
      const named = new Set(groups.flatMap((g) => (g.model === undefined ? [] : [g.model])));
      expect(named).toEqual(new Set(served.slice(20).map((j) => j.model)));
      const sum = (f: (g: (typeof groups)[number]) => number) => groups.reduce((n, g) => n + f(g), 0);
      expect(sum((g) => g.jobs)).toBe(5_120);
      expect(sum((g) => (g.missed ? g.jobs : 0))).toBe(5_000);
      expect(sum((g) => g.earningsMicro)).toBe(served.reduce((n, j) => n + j.inputTokens, 0));
      expect(groups.find((g) => g.model === undefined && g.outcome === 'done')).toMatchObject({
        jobs: 20,
        earningsMicro: (20 * 21 * 1_000) / 2,
      });
    });
  });
});

describe('the retention (prune at start)', () => {
  it('deletes what is older than retention_days, and no more when the clock is set years ahead', async () => {
    const d = await mkdtemp(join(tmpdir(), 'usepod-ledger-prune-'));
    const l = Ledger.open(join(d, 'ledger.db'));
    try {
      const recent = Array.from({ length: 30 }, (_, i) => oneJob({ receivedAt: NOW - i * 86_400_000 }));
      l.write([oneJob({ receivedAt: NOW - 500 * 86_400_000 }), ...recent]);
      const since = (t: number) => earnings(l, { since: t, by: 'backend', now: NOW })[0]?.served ?? 0;
      expect(l.prune(400, NOW)).toBe(1);
      expect(since(0)).toBe(30);
      // Booted with the clock three years ahead (put back by NTP later): the last 30 days stay.
      expect(l.prune(400, NOW + 3 * 365 * 86_400_000)).toBe(0);
      expect(since(0)).toBe(30);
    } finally {
      l.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});

describe('the quarter-hour summaries (issue 28)', () => {
  it('answer as the rows do, on random ledgers, any start, any grouping, in three time zones', () => {
    const zone = process.env.TZ;
    let n = 0;
    try {
      fc.assert(
        fc.property(
          fc.array(job, { maxLength: 60 }),
          fc.integer({ min: -3_600_000, max: 9 * 3_600_000 }),
          fc.constantFrom(...GROUPINGS),
          fc.constantFrom('UTC', 'Europe/Paris', 'Asia/Kathmandu'),
          fc.nat(3),
          (xs, from, by, tz, cut) => {
            process.env.TZ = tz;
            const rs = ledgerRecords(xs);
            const l = Ledger.open(join(dir, `p${n++}.db`));
            try {
              // Written in batches in any order, as jobs end.
              const at = Math.floor((rs.length * cut) / 4);
              l.write(rs.slice(at));
              l.write(rs.slice(0, at));
              const since = BASE + from;
              const now = BASE + 12 * 3_600_000;
              expectSame(l, rs, since, by, now);
              const total = (ws: ReturnType<typeof reference>) =>
                ws.reduce(
                  (t, r) => ({
                    served: t.served + r.served,
                    missed: t.missed + r.missed,
                    failed: t.failed + r.failed,
                    earnings_usdc: t.earnings_usdc + r.earnings_usdc,
                  }),
                  { served: 0, missed: 0, failed: 0, earnings_usdc: 0 },
                );
              const s = l.summary(since, since + 1_234_567);
              const want = total(reference(rs, since, 'model', now));
              expect({ ...s.today, earnings_usdc: 0 }).toEqual({ ...want, earnings_usdc: 0 });
              expect(s.today.earnings_usdc).toBeCloseTo(want.earnings_usdc, 9);
              expect(s.last_7_days.served).toBe(total(reference(rs, since + 1_234_567, 'model', now)).served);
            } finally {
              l.close();
            }
          },
        ),
        { numRuns: 150, seed: 28 },
      );
    } finally {
      process.env.TZ = zone;
      if (zone === undefined) delete process.env.TZ;
    }
  });

  it('are backfilled once from the rows of an older ledger (schema 3)', () => {
    const file = join(dir, 'old.db');
    const rs = records(3000);
    const l = Ledger.open(file);
    l.write(rs);
    l.close();
    // What an agent of schema 3 left: the rows, without the summaries.
    const raw = new Database(file);
    raw.exec(`DROP TABLE job_sums; DROP TABLE busy; DROP TABLE energy; ALTER TABLE jobs DROP COLUMN energy_wh;
      PRAGMA user_version = 3;`);
    raw.close();
    const upgraded = Ledger.open(file);
    try {
      for (const by of GROUPINGS) expectSame(upgraded, rs, NOW - 7 * 86_400_000 + 123_457, by, NOW);
    } finally {
      upgraded.close();
    }
  });
});

// The code the SQL replaced (packages/cli/src/ledger before issue 28), kept as the reference.

const MISSED = new Set(REFUSALS.filter((r) => r !== 'malformed'));
const pad = (n: number) => String(n).padStart(2, '0');

function keyOf(r: JobRecord, by: Grouping): string {
  if (by === 'model') return r.model;
  if (by === 'backend') return r.backend ?? '(none)';
  const d = new Date(Math.round(r.receivedAt));
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return by === 'day' ? day : `${day} ${pad(d.getHours())}:00`;
}

/** The union of spans as disjoint [start, end) pairs, in order. */
function union(spans: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of [...spans].sort((x, y) => x[0] - y[0])) {
    const last = out.at(-1);
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

const length = (spans: [number, number][]) => spans.reduce((n, [a, b]) => n + b - a, 0);

/**
 * Busy time since `since`, by group: for a model or a backend the union of its jobs' spans (every job,
 * received before `since` too) from `since` on; for a day or an hour the union of every job's spans
 * within it, each piece of the union cut at quarter hours (local hours start on them) and given to the
 * local day or hour it lies in.
 */
function busyByGroup(all: JobRecord[], since: number, by: Grouping): Map<string, number> {
  const clip = (rs: JobRecord[]) =>
    union(
      rs
        .filter((r) => r.durationMs > 0 && r.receivedAt + r.durationMs > since)
        .map((r): [number, number] => [Math.max(since, r.receivedAt), r.receivedAt + r.durationMs]),
    );
  const out = new Map<string, number>();
  if (by === 'model' || by === 'backend') {
    const keys = new Set(all.map((r) => keyOf(r, by)));
    for (const k of keys) out.set(k, length(clip(all.filter((r) => keyOf(r, by) === k))));
    return out;
  }
  const Q = 900_000;
  for (const [a, b] of clip(all)) {
    for (let t = a; t < b; ) {
      const next = Math.min(b, (Math.floor(t / Q) + 1) * Q);
      const k = keyOf({ receivedAt: t } as JobRecord, by);
      out.set(k, (out.get(k) ?? 0) + next - t);
      t = next;
    }
  }
  return out;
}

function reference(all: JobRecord[], since: number, by: Grouping, now: number) {
  const groups = new Map<string, JobRecord[]>();
  const busy = busyByGroup(all, since, by);
  for (const r of all.filter((x) => x.receivedAt >= since)) {
    const k = keyOf(r, by);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const out = [...groups].map(([group, rs]) => {
    let streamMs = 0;
    let streamed = 0;
    const row = {
      group,
      served: 0,
      failed: 0,
      missed: 0,
      cancelled: 0,
      input_tokens: 0,
      output_tokens: 0,
      earnings_usdc: 0,
      tokens_per_sec: null as number | null,
      busy: 0,
    };
    for (const r of rs) {
      if (r.outcome === 'done') row.served++;
      else if (r.outcome === 'cancelled') row.cancelled++;
      else if (r.refusal && MISSED.has(r.refusal)) row.missed++;
      else row.failed++;
      row.input_tokens += r.inputTokens;
      row.output_tokens += r.outputTokens;
      if (r.outcome === 'done' && r.inputPer1m !== undefined && r.outputPer1m !== undefined)
        row.earnings_usdc += (r.inputTokens * r.inputPer1m + r.outputTokens * r.outputPer1m) / 1e12;
      if (r.outcome === 'done' && r.firstByteMs !== undefined && r.durationMs > r.firstByteMs) {
        streamMs += r.durationMs - r.firstByteMs;
        streamed += r.outputTokens;
      }
    }
    if (streamMs > 0) row.tokens_per_sec = streamed / (streamMs / 1000);
    const windowMs = by === 'day' ? 86_400_000 : by === 'hour' ? 3_600_000 : Math.max(1, now - since);
    row.busy = Math.min(1, (busy.get(group) ?? 0) / windowMs);
    return row;
  });
  return by === 'day' || by === 'hour'
    ? out.sort((a, b) => a.group.localeCompare(b.group))
    : out.sort((a, b) => b.earnings_usdc - a.earnings_usdc || a.group.localeCompare(b.group));
}

function referenceHistory(all: SelfTestResult[], since: number) {
  const groups = new Map<string, SelfTestResult[]>();
  for (const r of [...all].sort((a, b) => Date.parse(a.at) - Date.parse(b.at))) {
    if (Date.parse(r.at) < since) continue;
    const k = `${r.backend}\u0000${r.model}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const q = (values: number[], p: number) => {
    if (values.length === 0) return null;
    const sorted = [...values].sort((a, b) => a - b);
    const v = sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
    return Math.round(v * 10) / 10;
  };
  return [...groups.values()]
    .map((g) => {
      const ok = g.filter((r) => r.ok);
      return {
        backend: g[0]!.backend,
        model: g[0]!.model,
        tests: g.length,
        passed: ok.length,
        ttft_ms_p50: q(
          ok.map((r) => r.ttftMs!),
          50,
        ),
        ttft_ms_p95: q(
          ok.map((r) => r.ttftMs!),
          95,
        ),
        tokens_per_sec_p50: q(
          ok.map((r) => r.tokensPerSecond!),
          50,
        ),
        last_at: new Date(Date.parse(g.at(-1)!.at)).toISOString(),
        last_error: g.filter((r) => !r.ok).at(-1)?.error ?? null,
      };
    })
    .sort((a, b) => a.model.localeCompare(b.model) || a.backend.localeCompare(b.backend));
}

describe("the dashboard's reader: plugin-ledger's thread, read-only (issue 30)", () => {
  const ask = (w: ReturnType<typeof ledgerReader>, m: object) =>
    new Promise<WorkerReply>((resolve) => {
      w.once('message', resolve);
      w.postMessage(m);
    });

  it("answers 'series' with the sums of the ledger's own queries, and writes nothing", async () => {
    const w = ledgerReader(join(dir, 'ledger.db'));
    try {
      const r = await ask(w, { id: 1, op: 'series', now: NOW });
      expect(r.ok).toBe(true);
      const s = (r as { value: LedgerSeries }).value;
      expect(s).toEqual(ledgerSeries(ledger, NOW));
      expect(s.by_day.length).toBeGreaterThan(0);
      expect(s.missed).toEqual(ledger.missed(NOW - 86_400_000));
      expect(s.totals.d30).toBeCloseTo(
        earnings(ledger, { since: NOW - 30 * 86_400_000, by: 'backend', now: NOW }).reduce(
          (n, x) => n + x.earnings_usdc,
          0,
        ),
        9,
      );
      const write = await ask(w, { id: 2, op: 'write', jobs: [{ ...jobs[0]!, jobId: 'x' }] });
      expect(write).toMatchObject({ id: 2, ok: false, error: 'this ledger thread only reads' });
    } finally {
      await w.terminate();
    }
  });
});

describe('the ledger file', () => {
  it('is made 0600, and so are its -wal and -shm files; an existing file keeps its mode', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-ledger-mode-'));
    try {
      // The process's umask would otherwise give 0644: the rows are the operator's earnings.
      const file = join(dir, 'shared', 'ledger.db');
      const ledger = Ledger.open(file);
      ledger.write(records(3));
      const modes = ['', '-wal', '-shm'].map((s) => (statSync(file + s).mode & 0o777).toString(8));
      ledger.close();
      expect(modes).toEqual(['600', '600', '600']);

      const older = join(dir, 'older.db');
      writeFileSync(older, '', { mode: 0o640 });
      chmodSync(older, 0o640);
      Ledger.open(older).close();
      expect((statSync(older).mode & 0o777).toString(8)).toBe('640');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
