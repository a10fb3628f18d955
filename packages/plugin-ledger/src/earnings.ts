import { createRequire } from 'node:module';
import { BUCKET_MS } from './buckets.js';
import { GROUPINGS, type Grouping, type Ledger } from './ledger.js';

export { GROUPINGS, type Grouping };

const requireHere = createRequire(import.meta.url);

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
  /**
   * Energy (issue 31), null where none was measured: for a model or a backend its jobs' energy; for a
   * day or an hour the GPUs' energy in it, serving and idle (`idle_kwh` the idle part).
   */
  energy_kwh: number | null;
  idle_kwh: number | null;
  /** The energy at the tariff in force in each quarter hour, USDC; null without a price. */
  energy_cost_usdc: number | null;
  /** Earnings less the energy cost. */
  net_usdc: number | null;
  usdc_per_kwh: number | null;
}

/** The operator's electricity price at a time, USDC per kWh (plugin-gpu's `tariffOf`). */
export interface PriceAt {
  priceAt(t: number): number | undefined;
  readonly priced: boolean;
}

export interface EarningsTotals {
  served: number;
  failed: number;
  missed: number;
  cancelled: number;
  input_tokens: number;
  output_tokens: number;
  earnings_usdc: number;
  /** The GPUs' energy in the window, serving (jobs in flight) and idle; null where none was measured. */
  energy_kwh: number | null;
  serving_kwh: number | null;
  idle_kwh: number | null;
  energy_cost_usdc: number | null;
  net_usdc: number | null;
  usdc_per_kwh: number | null;
}

/** The groups a cut list leaves out (`top`): how many, and what they came to. */
export interface EarningsMore
  extends Pick<
    EarningsRow,
    'served' | 'failed' | 'missed' | 'cancelled' | 'input_tokens' | 'output_tokens' | 'earnings_usdc'
  > {
  groups: number;
}

export interface EarningsReport {
  rows: EarningsRow[];
  /** With `top`: the groups past it, summed (they count in `totals`); null when none was left out. */
  more: EarningsMore | null;
  totals: EarningsTotals;
  /** Why energy figures are missing, when they are (one line for the operator). */
  energy_note: string | null;
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

/**
 * Earnings after electricity (issue 31): the rows with their energy, cost at the tariff in force in each
 * quarter hour, net and USDC per kWh, and the totals, whose energy is all the GPUs used in the window
 * (idle too). Without energy in the ledger (no GPU tool, no `[energy]`), nothing is counted and
 * `energy_note` says why; without a price, the cost and net are null and the note says so.
 */
export function earningsReport(
  ledger: Ledger,
  opts: {
    since: number;
    by: Grouping;
    now?: number;
    tariff?: PriceAt | undefined;
    /** The groups that earned most, at most this many; the rest summed as `more`, in SQL. */
    top?: number | undefined;
    /** Only the groups whose jobs' energy was measured. */
    measured?: boolean;
  },
): EarningsReport {
  const now = opts.now ?? Date.now();
  const { rows, more } = cutEarnings(ledger, { ...opts, now });
  const { jobs, gpus } = ledger.energy(opts.since, opts.by, now);
  // A tariff's lookup reads the wall clock in a zone (Intl): once per quarter hour of the window.
  const prices = new Map<number, number | undefined>();
  const price = (bucket: number) => {
    if (!prices.has(bucket)) prices.set(bucket, opts.tariff?.priceAt(bucket * BUCKET_MS));
    return prices.get(bucket);
  };
  const priced = opts.tariff?.priced === true;
  /** Energy and cost per group; a quarter hour without a price makes its group's cost unknown. */
  const per = new Map<string | undefined, { wh: number; idleWh: number; cost: number | null }>();
  const add = (group: string | undefined, wh: number, idleWh: number, bucket: number) => {
    const e = per.get(group) ?? { wh: 0, idleWh: 0, cost: 0 };
    const p = price(bucket);
    e.wh += wh;
    e.idleWh += idleWh;
    e.cost = p === undefined || e.cost === null ? null : e.cost + (wh / 1000) * p;
    per.set(group, e);
  };
  const byTime = opts.by === 'day' || opts.by === 'hour';
  if (byTime) for (const g of gpus) add(g.group, g.serving_wh + g.idle_wh, g.idle_wh, g.bucket);
  else for (const j of jobs) add(j.group, j.wh, 0, j.bucket);
  const total = { wh: 0, servingWh: 0, idleWh: 0, cost: 0 as number | null };
  for (const g of gpus) {
    const p = price(g.bucket);
    total.wh += g.serving_wh + g.idle_wh;
    total.servingWh += g.serving_wh;
    total.idleWh += g.idle_wh;
    total.cost =
      p === undefined || total.cost === null ? null : total.cost + ((g.serving_wh + g.idle_wh) / 1000) * p;
  }
  const measured = gpus.length > 0 || jobs.length > 0;
  const figures = (earned: number, wh: number, idleWh: number | null, cost: number | null) => {
    if (!measured)
      return { energy_kwh: null, idle_kwh: null, energy_cost_usdc: null, net_usdc: null, usdc_per_kwh: null };
    const c = priced ? cost : null;
    return {
      energy_kwh: wh / 1000,
      idle_kwh: idleWh === null ? null : idleWh / 1000,
      energy_cost_usdc: c,
      net_usdc: c === null ? null : earned - c,
      usdc_per_kwh: wh > 0 ? earned / (wh / 1000) : null,
    };
  };
  const out = rows.map((r) => {
    const e = per.get(r.group) ?? { wh: 0, idleWh: 0, cost: 0 };
    return { ...r, ...figures(r.earnings_usdc, e.wh, byTime ? e.idleWh : null, e.cost) };
  });
  const sum = (
    k: 'served' | 'failed' | 'missed' | 'cancelled' | 'input_tokens' | 'output_tokens' | 'earnings_usdc',
  ) => rows.reduce((n, r) => n + r[k], more?.[k] ?? 0);
  const earned = sum('earnings_usdc');
  const t = figures(earned, total.wh, total.idleWh, total.cost);
  return {
    rows: out,
    more,
    totals: {
      served: sum('served'),
      failed: sum('failed'),
      missed: sum('missed'),
      cancelled: sum('cancelled'),
      input_tokens: sum('input_tokens'),
      output_tokens: sum('output_tokens'),
      earnings_usdc: earned,
      energy_kwh: t.energy_kwh,
      serving_kwh: measured ? total.servingWh / 1000 : null,
      idle_kwh: t.idle_kwh,
      energy_cost_usdc: t.energy_cost_usdc,
      net_usdc: t.net_usdc,
      usdc_per_kwh: t.usdc_per_kwh,
    },
    energy_note: !measured
      ? 'no energy measured in this window (no nvidia-smi or rocm-smi, or no [energy] section): kWh and cost are not counted'
      : !priced
        ? 'no electricity price: set [energy] price_per_kwh (USDC) for the cost and the net'
        : null,
  };
}

/**
 * Sums the ledger since a time by model, backend, day or hour: the SQL does the work (ledger.ts). `top`:
 * only the groups that earned most, chosen in SQL (a model id per refused job is the coordinator's).
 */
export function earnings(
  ledger: Ledger,
  opts: { since: number; by: Grouping; now?: number; top?: number },
): EarningsRow[] {
  return cutEarnings(ledger, opts).rows;
}

/** `earnings`, and what `top` or `measured` left out, summed. */
function cutEarnings(
  ledger: Ledger,
  opts: { since: number; by: Grouping; now?: number; top?: number | undefined; measured?: boolean },
): { rows: EarningsRow[]; more: EarningsMore | null } {
  const now = opts.now ?? Date.now();
  // The share of the group's own window: a day or an hour, else the whole asked-for period.
  const windowMs =
    opts.by === 'day' ? 86_400_000 : opts.by === 'hour' ? 3_600_000 : Math.max(1, now - opts.since);
  const { rows, rest } = ledger.groups(opts.since, opts.by, now, {
    top: opts.top,
    measured: opts.measured ?? false,
  });
  const out = rows.map(
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
      energy_kwh: null,
      idle_kwh: null,
      energy_cost_usdc: null,
      net_usdc: null,
      usdc_per_kwh: null,
    }),
  );
  const more: EarningsMore | null = rest
    ? {
        groups: rest.groups,
        served: rest.served,
        failed: rest.failed,
        missed: rest.missed,
        cancelled: rest.cancelled,
        input_tokens: rest.input_tokens,
        output_tokens: rest.output_tokens,
        earnings_usdc: rest.earnings_micro / 1_000_000,
      }
    : null;
  // Times in order; models and backends by what they earned.
  return {
    rows:
      opts.by === 'day' || opts.by === 'hour'
        ? out.sort((a, b) => a.group.localeCompare(b.group))
        : out.sort((a, b) => b.earnings_usdc - a.earnings_usdc || a.group.localeCompare(b.group)),
    more,
  };
}

/**
 * Rows as CSV for a spreadsheet, the same whatever the locale: '.' decimals in a fixed number of digits
 * (never `1e-7`), no grouping, and a cell a spreadsheet would run as a formula (a coordinator's model id)
 * written as text.
 */
export function earningsCsv(
  rows: readonly EarningsRow[],
  more: EarningsMore | null = null,
  by: Grouping = 'model',
): string {
  // Loaded when CSV is asked for: this module also sums earnings in every agent and in the ledger's
  // thread, which would otherwise load csv-stringify (8 modules) for a command they never run.
  const { stringify } = requireHere('csv-stringify/sync') as typeof import('csv-stringify/sync');
  const cells = rows.map((r) => ({
    ...r,
    group: FORMULA.test(r.group) ? `'${r.group}` : r.group,
    earnings_usdc: r.earnings_usdc.toFixed(6),
    tokens_per_sec: r.tokens_per_sec === null ? '' : r.tokens_per_sec.toFixed(1),
    busy: r.busy.toFixed(4),
    energy_kwh: fixed(r.energy_kwh, 6),
    idle_kwh: fixed(r.idle_kwh, 6),
    energy_cost_usdc: fixed(r.energy_cost_usdc, 6),
    net_usdc: fixed(r.net_usdc, 6),
    usdc_per_kwh: fixed(r.usdc_per_kwh, 6),
  }));
  // The groups a cut list left out, as one row: the columns still add up to the totals.
  const rest = more && {
    ...more,
    group: `(${more.groups} more ${by}s)`,
    earnings_usdc: more.earnings_usdc.toFixed(6),
  };
  // Only the text is escaped: csv-stringify's escape_formulas would write a negative net as text too.
  return stringify(rest ? [...cells, rest] : cells, { header: true, columns: CSV_COLUMNS });
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
  'energy_kwh',
  'idle_kwh',
  'energy_cost_usdc',
  'net_usdc',
  'usdc_per_kwh',
];

/** What a spreadsheet runs as a formula at the start of a cell (OWASP's list), kept as text with a `'`. */
const FORMULA = /^[=+\-@\t\r]/;

const fixed = (v: number | null, digits: number) => (v === null ? '' : v.toFixed(digits));
