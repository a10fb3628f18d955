import type { Ledger } from './ledger.js';

/** The self-tests the ledger holds since a time, per backend and model: how often they passed, how fast. */
export interface SelfTestHistoryRow {
  backend: string;
  model: string;
  tests: number;
  passed: number;
  /** Medians and 95th percentiles over the passing tests; null when none passed. */
  ttft_ms_p50: number | null;
  ttft_ms_p95: number | null;
  tokens_per_sec_p50: number | null;
  last_at: string;
  /** The most recent failure's reason, if any failed. */
  last_error: string | null;
}

export function selftestHistory(
  ledger: Ledger,
  opts: { since: number; model?: string },
): SelfTestHistoryRow[] {
  const rows = ledger.db
    .prepare(
      `SELECT at, backend, model, ok, ttft_ms, tokens_per_sec, error FROM selftests
       WHERE at >= ? ${opts.model ? 'AND model = ?' : ''} ORDER BY at`,
    )
    .all(...(opts.model ? [opts.since, opts.model] : [opts.since])) as {
    at: number;
    backend: string;
    model: string;
    ok: number;
    ttft_ms: number | null;
    tokens_per_sec: number | null;
    error: string | null;
  }[];
  const groups = new Map<string, typeof rows>();
  for (const r of rows) {
    const k = `${r.backend}\u0000${r.model}`;
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  return [...groups.values()]
    .map((g) => {
      const ok = g.filter((r) => r.ok === 1);
      const ttft = ok.flatMap((r) => (r.ttft_ms === null ? [] : [r.ttft_ms]));
      const rate = ok.flatMap((r) => (r.tokens_per_sec === null ? [] : [r.tokens_per_sec]));
      const failed = g.filter((r) => r.ok === 0);
      return {
        backend: g[0]!.backend,
        model: g[0]!.model,
        tests: g.length,
        passed: ok.length,
        ttft_ms_p50: quantile(ttft, 50),
        ttft_ms_p95: quantile(ttft, 95),
        tokens_per_sec_p50: quantile(rate, 50),
        last_at: new Date(g.at(-1)!.at).toISOString(),
        last_error: failed.at(-1)?.error ?? null,
      };
    })
    .sort((a, b) => a.model.localeCompare(b.model) || a.backend.localeCompare(b.backend));
}

/** Nearest-rank percentile of values. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
}

/** The nearest-rank percentile, rounded to 0.1; null for no values. */
function quantile(values: number[], p: number): number | null {
  return values.length === 0 ? null : Math.round(percentile(values, p) * 10) / 10;
}
