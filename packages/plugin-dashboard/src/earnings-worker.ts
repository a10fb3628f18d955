import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '@usepod-agent/core';
import { earnings, Ledger, ledgerChecks } from '@usepod-agent/plugin-ledger';

/**
 * The dashboard's reads of the ledger, on a thread of their own: a month of a busy provider is summed in
 * SQL (the ledger's own queries), never on the event loop that relays the streams. Read-only: the
 * ledger plugin's thread is the only writer.
 */
export interface EarningsRequest {
  id: number;
  now: number;
}
export type EarningsReply =
  | { id: number; ok: true; value: EarningsSeries }
  | { id: number; ok: false; error: string };

export interface EarningsSeries {
  /** Per local day, the last 30 days. */
  by_day: { group: string; earnings_usdc: number; served: number; missed: number }[];
  /** Per local hour, the last 48 hours. */
  by_hour: { group: string; earnings_usdc: number; served: number }[];
  /** Per model, the last 30 days, most earned first. */
  by_model: { group: string; earnings_usdc: number; served: number; output_tokens: number }[];
  totals: { today: number; d7: number; d30: number };
  /** doctor's lines about missed jobs in 24 h, with their fixes. */
  missed: { name: string; level: string; detail: string; fix: string | null }[];
}

const { path, config } = workerData as { path: string; config: Config };
const DAY = 86_400_000;

function series(now: number): EarningsSeries {
  const ledger = Ledger.open(path, { readonly: true });
  try {
    const midnight = new Date(now);
    midnight.setHours(0, 0, 0, 0);
    const days = earnings(ledger, { since: midnight.getTime() - 29 * DAY, by: 'day', now });
    const hours = earnings(ledger, { since: now - 48 * 3_600_000, by: 'hour', now });
    const models = earnings(ledger, { since: now - 30 * DAY, by: 'model', now });
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
      missed: ledgerChecks(path, config, { engineCapacity: undefined }, now)
        .filter((c) => c.name.startsWith('missed'))
        .map((c) => ({ name: c.name, level: c.level, detail: c.detail, fix: c.fix ?? null })),
    };
  } finally {
    ledger.close();
  }
}

parentPort?.on('message', (m: EarningsRequest) => {
  let reply: EarningsReply;
  try {
    reply = { id: m.id, ok: true, value: series(m.now) };
  } catch (err) {
    reply = { id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply);
});
