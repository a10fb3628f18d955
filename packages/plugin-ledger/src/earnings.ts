import { stringify } from 'csv-stringify/sync';
import { GROUPINGS, type Grouping, type Ledger } from './ledger.js';

export { GROUPINGS, type Grouping };

/**
 * Why a job was turned away that makes it one the operator missed: every refusal but `malformed` (a
 * frame without model or request is no loss). Paused is missed too: the job was there to earn.
 */
export const MISSED_REFUSALS = [
  'max_concurrent',
  'token_budget',
  'paused',
  'draining',
  'model_not_loaded',
  'request_too_large',
];

export interface EarningsRow {
  group: string;
  served: number;
  failed: number;
  missed: number;
  cancelled: number;
  input_tokens: number;
  output_tokens: number;
  earnings_usdc: number;
  /** Output tokens per second of streaming (first byte to end), over served jobs. */
  tokens_per_sec: number | null;
  /** Share of the window with at least one of the group's jobs in flight, 0..1. */
  busy: number;
}

/** `24h`, `7d`, `30d`, `90m`, or a date (`2026-11-01`, any Date.parse form): the window's start, epoch ms. */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const rel = /^(\d+)\s*([mhdw])$/.exec(text.trim());
  if (rel) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[rel[2] as 'm' | 'h' | 'd' | 'w'];
    const t = now - Number(rel[1]) * unit;
    return Number.isFinite(t) && t >= 0 ? t : 0;
  }
  // A bare date is midnight local time, as an operator means it (Date.parse would take UTC).
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  if (day) return new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime();
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

/** Sums the ledger since a time by model, backend, day or hour: the SQL does the work (ledger.ts). */
export function earnings(ledger: Ledger, opts: { since: number; by: Grouping; now?: number }): EarningsRow[] {
  const now = opts.now ?? Date.now();
  // The share of the group's own window: a day or an hour, else the whole asked-for period.
  const windowMs =
    opts.by === 'day' ? 86_400_000 : opts.by === 'hour' ? 3_600_000 : Math.max(1, now - opts.since);
  const out = ledger.groups(opts.since, opts.by, now).map(
    (g): EarningsRow => ({
      group: g.group,
      served: g.served,
      failed: g.failed,
      missed: g.missed,
      cancelled: g.cancelled,
      input_tokens: g.input_tokens,
      output_tokens: g.output_tokens,
      earnings_usdc: g.earnings_micro / 1_000_000,
      tokens_per_sec: g.stream_ms > 0 ? g.streamed_tokens / (g.stream_ms / 1000) : null,
      busy: Math.min(1, g.busy_ms / windowMs),
    }),
  );
  // Times in order; models and backends by what they earned.
  return opts.by === 'day' || opts.by === 'hour'
    ? out.sort((a, b) => a.group.localeCompare(b.group))
    : out.sort((a, b) => b.earnings_usdc - a.earnings_usdc || a.group.localeCompare(b.group));
}

/**
 * Rows as CSV for a spreadsheet, the same whatever the locale: '.' decimals in a fixed number of digits
 * (never `1e-7`), no grouping, and a cell a spreadsheet would run as a formula (a coordinator's model id)
 * written as text.
 */
export function earningsCsv(rows: readonly EarningsRow[]): string {
  return stringify(
    rows.map((r) => ({
      ...r,
      earnings_usdc: r.earnings_usdc.toFixed(6),
      tokens_per_sec: r.tokens_per_sec === null ? '' : r.tokens_per_sec.toFixed(1),
      busy: r.busy.toFixed(4),
    })),
    { header: true, escape_formulas: true, columns: CSV_COLUMNS },
  );
}

const CSV_COLUMNS: (keyof EarningsRow)[] = [
  'group',
  'served',
  'failed',
  'missed',
  'cancelled',
  'input_tokens',
  'output_tokens',
  'earnings_usdc',
  'tokens_per_sec',
  'busy',
];
