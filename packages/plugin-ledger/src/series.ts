import { earnings } from './earnings.js';
import type { Ledger, MissedRow } from './ledger.js';

/**
 * The dashboard's charts from the ledger: sums per local day (30 days), per hour (48 hours) and per model
 * (30 days), the totals and the jobs missed in 24 h. Summed on a ledger thread (`ledgerReader`), never
 * on the relay's event loop; core-free, like everything that thread loads.
 */
export interface LedgerSeries {
  by_day: { group: string; earnings_usdc: number; served: number; missed: number }[];
  by_hour: { group: string; earnings_usdc: number; served: number }[];
  /** The 20 that earned most. */
  by_model: { group: string; earnings_usdc: number; served: number; output_tokens: number }[];
  totals: { today: number; d7: number; d30: number };
  /** `Ledger.missed` over 24 h: `missedChecks` makes doctor's lines of them. */
  missed: MissedRow[];
}

const DAY = 86_400_000;

export function ledgerSeries(ledger: Ledger, now: number): LedgerSeries {
  const midnight = new Date(now);
  midnight.setHours(0, 0, 0, 0);
  const days = earnings(ledger, { since: midnight.getTime() - 29 * DAY, by: 'day', now });
  const hours = earnings(ledger, { since: now - 48 * 3_600_000, by: 'hour', now });
  // The 20 chosen in SQL: a month of refused jobs may name a model id each, the coordinator's choice.
  const models = earnings(ledger, { since: now - 30 * DAY, by: 'model', now, top: 20 });
  const sum = (since: number) =>
    earnings(ledger, { since, by: 'backend', now }).reduce((n, r) => n + r.earnings_usdc, 0);
  return {
    by_day: days.map((r) => ({
      group: r.group,
      earnings_usdc: r.earnings_usdc,
      served: r.served,
      missed: r.missed,
    })),
    by_hour: hours.map((r) => ({ group: r.group, earnings_usdc: r.earnings_usdc, served: r.served })),
    by_model: models.slice(0, 20).map((r) => ({
      group: r.group,
      earnings_usdc: r.earnings_usdc,
      served: r.served,
      output_tokens: r.output_tokens,
    })),
    totals: { today: sum(midnight.getTime()), d7: sum(now - 7 * DAY), d30: sum(now - 30 * DAY) },
    missed: ledger.missed(now - DAY),
  };
}
