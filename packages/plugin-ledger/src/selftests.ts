import type { Ledger } from './ledger.js';

/** The self-tests the ledger holds since a time, per backend and model: how often they passed, how fast. */
export interface SelfTestHistoryRow {
  backend: string;
  model: string;
  tests: number;
  passed: number;
  /** Medians and 95th percentiles (nearest rank) over the passing tests; null when none passed. */
  ttft_ms_p50: number | null;
  ttft_ms_p95: number | null;
  tokens_per_sec_p50: number | null;
  last_at: string;
  /** The most recent failure's reason, if any failed. */
  last_error: string | null;
}

const round = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);

/** The percentiles are SQL's (ledger.ts): memory is one row per backend and model, however many tests. */
export function selftestHistory(
  ledger: Ledger,
  opts: { since: number; model?: string },
): SelfTestHistoryRow[] {
  return ledger
    .selftests(opts.since, opts.model)
    .map((r) => ({
      backend: r.backend,
      model: r.model,
      tests: r.tests,
      passed: r.passed,
      ttft_ms_p50: round(r.ttft_ms_p50),
      ttft_ms_p95: round(r.ttft_ms_p95),
      tokens_per_sec_p50: round(r.tokens_per_sec_p50),
      last_at: new Date(r.last_at).toISOString(),
      last_error: r.last_error,
    }))
    .sort((a, b) => a.model.localeCompare(b.model) || a.backend.localeCompare(b.backend));
}
