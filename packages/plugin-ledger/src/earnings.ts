import type { Ledger } from './ledger.js';

/** What `earnings` groups by. */
export const GROUPINGS = ['model', 'backend', 'day', 'hour'] as const;
export type Grouping = (typeof GROUPINGS)[number];

/** Why a job was turned away that makes it one the operator missed (a malformed frame is no loss). */
export const MISSED_REFUSALS = [
  'max_concurrent',
  'token_budget',
  'draining',
  'model_not_loaded',
  'request_too_large',
];
const MISSED = new Set(MISSED_REFUSALS);

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
    return now - Number(rel[1]) * unit;
  }
  // A bare date is midnight local time, as an operator means it (Date.parse would take UTC).
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  if (day) return new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime();
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

interface Row {
  model: string;
  backend: string | null;
  received_at: number;
  first_byte_ms: number | null;
  duration_ms: number;
  outcome: string;
  error_code: string | null;
  refusal: string | null;
  input_tokens: number;
  output_tokens: number;
  earnings_micro: number;
}

const pad = (n: number) => String(n).padStart(2, '0');

function keyOf(r: Row, by: Grouping): string {
  if (by === 'model') return r.model;
  if (by === 'backend') return r.backend ?? '(none)';
  const d = new Date(r.received_at);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return by === 'day' ? day : `${day} ${pad(d.getHours())}:00`;
}

/** Length of the union of [start, end) intervals: time with at least one job in flight. */
function covered(spans: [number, number][]): number {
  spans.sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [s, e] = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (const [a, b] of spans) {
    if (a > e) {
      if (e > s) total += e - s;
      [s, e] = [a, b];
    } else if (b > e) e = b;
  }
  if (e > s) total += e - s;
  return total;
}

export function earnings(ledger: Ledger, opts: { since: number; by: Grouping; now?: number }): EarningsRow[] {
  const now = opts.now ?? Date.now();
  const rows = ledger.db
    .prepare(
      `SELECT model, backend, received_at, first_byte_ms, duration_ms, outcome, error_code, refusal, input_tokens,
              output_tokens, earnings_micro FROM jobs WHERE received_at >= ? ORDER BY received_at`,
    )
    .all(opts.since) as Row[];
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const k = keyOf(r, opts.by);
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const out: EarningsRow[] = [];
  for (const [group, rs] of groups) {
    let streamMs = 0;
    let streamed = 0;
    const row: EarningsRow = {
      group,
      served: 0,
      failed: 0,
      missed: 0,
      cancelled: 0,
      input_tokens: 0,
      output_tokens: 0,
      earnings_usdc: 0,
      tokens_per_sec: null,
      busy: 0,
    };
    const spans: [number, number][] = [];
    for (const r of rs) {
      if (r.outcome === 'done') row.served++;
      else if (r.outcome === 'cancelled') row.cancelled++;
      else if (r.refusal && MISSED.has(r.refusal)) row.missed++;
      else row.failed++;
      row.input_tokens += r.input_tokens;
      row.output_tokens += r.output_tokens;
      row.earnings_usdc += r.earnings_micro / 1_000_000;
      if (r.outcome === 'done' && r.first_byte_ms !== null && r.duration_ms > r.first_byte_ms) {
        streamMs += r.duration_ms - r.first_byte_ms;
        streamed += r.output_tokens;
      }
      if (r.duration_ms > 0) spans.push([r.received_at, r.received_at + r.duration_ms]);
    }
    if (streamMs > 0) row.tokens_per_sec = streamed / (streamMs / 1000);
    // The share of the group's own window: a day or an hour, else the whole asked-for period.
    const windowMs =
      opts.by === 'day' ? 86_400_000 : opts.by === 'hour' ? 3_600_000 : Math.max(1, now - opts.since);
    row.busy = Math.min(1, covered(spans) / windowMs);
    out.push(row);
  }
  // Times in order; models and backends by what they earned.
  return opts.by === 'day' || opts.by === 'hour'
    ? out.sort((a, b) => a.group.localeCompare(b.group))
    : out.sort((a, b) => b.earnings_usdc - a.earnings_usdc || a.group.localeCompare(b.group));
}
