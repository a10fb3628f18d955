/**
 * `earnings` and `status` on a busy provider's week (issue 28): 1.5 M jobs in a ledger, then each
 * grouping of `earnings`, the status section's today-and-7-days and the self-test history, timed, with
 * the process's peak RSS. They read the ledger's quarter-hour summaries (and at most 15 minutes of rows):
 * memory stays bounded however many rows.
 *
 *   npm run build && node --import tsx bench/ledger-queries.ts [rows]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobRecord, SelfTestResult } from '@usepod-agent/core';
import { tariffOf } from '@usepod-agent/plugin-gpu';
import { earnings, earningsReport, GROUPINGS, Ledger, selftestHistory } from '@usepod-agent/plugin-ledger';

const rows = Number(process.argv[2] ?? 1_500_000);
const dir = mkdtempSync(join(tmpdir(), 'usepod-ledger-bench-'));
const file = join(dir, 'ledger.db');
const now = Date.now();
const week = 7 * 86_400_000;
const models = Array.from({ length: 40 }, (_, i) => `org/model-${i}`);
const backends = ['vllm', 'ollama', 'llamacpp', undefined];

let seed = 1;
const rnd = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
  return seed / 2_147_483_648;
};

const fill0 = performance.now();
const ledger = Ledger.open(file);
const BATCH = 50_000;
for (let done = 0; done < rows; done += BATCH) {
  const batch: JobRecord[] = [];
  for (let i = 0; i < Math.min(BATCH, rows - done); i++) {
    const k = rnd();
    const refusal = k < 0.15 ? (['paused', 'max_concurrent', 'model_not_loaded'] as const)[i % 3] : undefined;
    const durationMs = refusal ? 0 : Math.floor(rnd() * 30_000);
    batch.push({
      jobId: `j${done + i}`,
      model: models[Math.floor(rnd() * models.length)]!,
      backend: refusal ? undefined : backends[i % backends.length],
      outcome: refusal ? 'error' : k < 0.9 ? 'done' : k < 0.95 ? 'error' : 'cancelled',
      inputTokens: refusal ? 0 : Math.floor(rnd() * 2000),
      outputTokens: refusal ? 0 : Math.floor(rnd() * 600),
      bytes: 1000,
      durationMs,
      firstByteMs: durationMs ? Math.floor(durationMs / 10) : undefined,
      // In the order jobs arrive, as the agent appends them (a few ms of jitter: jobs end out of order).
      receivedAt: now - week + Math.floor(((done + i) / rows) * week) - Math.floor(rnd() * 5_000),
      format: 'openai',
      inputPer1m: 100_000,
      outputPer1m: 400_000,
      ...(refusal ? { refusal } : {}),
    });
  }
  const tests: SelfTestResult[] = Array.from({ length: 20 }, (_, i) => ({
    backend: 'vllm',
    model: models[i % 4]!,
    at: new Date(now - Math.floor(rnd() * week)).toISOString(),
    ok: i % 7 !== 0,
    ttftMs: rnd() * 400,
    tokensPerSecond: rnd() * 90,
    tokens: 16,
  })) as SelfTestResult[];
  // Energy as the GPU plugin tells it (issue 31): each job that ran, and the GPUs' every 5 s.
  const first = batch[0]!.receivedAt;
  const periods = [];
  for (let t = first; t < batch.at(-1)!.receivedAt; t += 5_000)
    periods.push({ from: t, to: t + 5_000, servingWh: rnd() * 0.4, idleWh: rnd() * 0.1 });
  ledger.write(batch, tests, {
    jobs: batch
      .filter((j) => !j.refusal)
      .map((j) => ({ jobId: j.jobId, receivedAt: j.receivedAt, wh: rnd() })),
    periods,
  });
}
ledger.close();
console.log(
  `filled ${rows.toLocaleString('en')} jobs in ${((performance.now() - fill0) / 1000).toFixed(1)} s`,
);

const read = Ledger.open(file, { readonly: true });
const rss0 = process.memoryUsage().rss;
// CPU time beside wall time: on a shared machine the wall clock also counts other processes' turns.
const time = <T>(label: string, f: () => T): T => {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const out = f();
  const c = process.cpuUsage(c0);
  const ms = (n: number) => n.toFixed(0).padStart(6);
  console.log(
    `${label.padEnd(34)} ${ms(performance.now() - t0)} ms wall ${ms((c.user + c.system) / 1000)} ms cpu`,
  );
  return out;
};
for (const by of GROUPINGS) {
  const r = time(`earnings --since 7d --by ${by}`, () => earnings(read, { since: now - week, by }));
  if (by === 'model' && r.length !== models.length) throw new Error(`expected ${models.length} groups`);
}
const tou = tariffOf({ price_per_kwh: 0.1, tariff: [{ when: 'Mon-Fri 17:00-21:00', price_per_kwh: 0.4 }] });
for (const by of ['model', 'hour'] as const)
  time(`earnings 7d by ${by}, energy, ToU`, () =>
    earningsReport(read, { since: now - week, by, tariff: tou }),
  );
const midnight = new Date(new Date(now).setHours(0, 0, 0, 0)).getTime();
time('status (today + 7 days, one query)', () => read.summary(midnight, now - week));
time('selftest --history --since 7d', () => selftestHistory(read, { since: now - week }));
read.close();
const peak = process.resourceUsage().maxRSS * 1024;
console.log(
  `rss ${(process.memoryUsage().rss / 1_048_576).toFixed(0)} MB after the queries (${(rss0 / 1_048_576).toFixed(0)} MB before); peak ${(peak / 1_048_576).toFixed(0)} MB`,
);
if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
else console.log(file);
