import { existsSync } from 'node:fs';
import {
  type Config,
  type DoctorFacts,
  type DoctorFinding,
  engineText,
  errorMessage,
} from '@usepod-agent/core';
import { energySection, tariffOf } from '@usepod-agent/plugin-gpu/tariff';
import { earningsReport } from './earnings.js';
import { Ledger, type MissedRow } from './ledger.js';

/** `doctor`'s lines from the ledger: the last job served, the jobs missed in 24 h and why, the token budget. */
type Check = DoctorFinding;
type Level = Check['level'];

const check = (name: string, level: Level, detail: string, fix?: string): Check => ({
  name,
  level,
  detail,
  ...(fix ? { fix } : {}),
});

export function ledgerChecks(
  path: string | undefined,
  config: Readonly<Config>,
  facts: DoctorFacts,
  now = Date.now(),
): Check[] {
  if (!path) return [check('ledger', 'warn', 'off ([ledger] path = "off"): nothing to say about past jobs')];
  if (!existsSync(path)) return [check('ledger', 'ok', `none yet at ${path} (written as jobs arrive)`)];
  let ledger: Ledger;
  try {
    ledger = Ledger.open(path, { readonly: true });
  } catch (err) {
    return [
      check(
        'ledger',
        'warn',
        errorMessage(err),
        'run doctor as the user the agent runs as (sudo for a service)',
      ),
    ];
  }
  try {
    const since = now - 86_400_000;
    const checks: Check[] = [];
    const last = ledger.lastServed();
    checks.push(
      last === undefined
        ? check(
            'last job',
            'warn',
            'no job served yet',
            'if the agent has been online a while, look at the checks above',
          )
        : // A row received while the clock was ahead (set back since) reads as just now, never "-5 min ago".
          check(
            'last job',
            now - last > 86_400_000 ? 'warn' : 'ok',
            `served ${ago(Math.max(0, now - last))} ago`,
          ),
    );
    checks.push(...missedChecks(ledger.missed(since), config, facts));
    const budget = config.limits.max_tokens_per_minute;
    if (budget) {
      const share = ledger.peakMinuteTokens(since) / budget;
      checks.push(
        check(
          'token budget',
          share >= 0.9 ? 'warn' : 'ok',
          `busiest minute in 24 h used ${Math.round(share * 100)}% of max_tokens_per_minute ${budget}`,
          share >= 0.9 ? 'raise limits.max_tokens_per_minute if the engine keeps up' : undefined,
        ),
      );
    }
    checks.push(...energyChecks(ledger, config, now));
    return checks;
  } finally {
    ledger.close();
  }
}

/**
 * The lines about the jobs missed in 24 h (`Ledger.missed`), with their fixes: doctor's, and the
 * dashboard's from the rows its ledger thread read.
 */
export function missedChecks(
  missed: readonly MissedRow[],
  config: Readonly<Config>,
  facts: Pick<DoctorFacts, 'engineCapacity'>,
): Check[] {
  const out: Check[] = [];
  const count = (r: string) => missed.filter((m) => m.refusal === r).reduce((n, m) => n + m.n, 0);
  const atCapacity = count('max_concurrent');
  if (atCapacity > 0) {
    const capacity = facts.engineCapacity ?? 0;
    const limit = config.limits.max_concurrent;
    const room =
      capacity > limit
        ? `: the engines can run ${capacity} at once; raise limits.max_concurrent`
        : capacity > 0
          ? `: the engines run ${capacity} at once too; more engine capacity would take them`
          : '; raise limits.max_concurrent if the engine has room';
    out.push(
      check(
        'missed: capacity',
        'warn',
        `${atCapacity} job(s) refused in 24 h at max_concurrent ${limit}${room}`,
        capacity > limit ? `set limits.max_concurrent = ${capacity}` : undefined,
      ),
    );
  }
  // The refusals whose line needs only their count: reason, check, level, what happened, the fix.
  const simple: [string, string, Level, (n: number) => string, string | undefined][] = [
    [
      'token_budget',
      'missed: token budget',
      'warn',
      (n) =>
        `${n} job(s) refused in 24 h over max_tokens_per_minute ${config.limits.max_tokens_per_minute ?? ''}`,
      'raise limits.max_tokens_per_minute if the engine keeps up',
    ],
    [
      'request_too_large',
      'missed: too large',
      'warn',
      (n) => `${n} job(s) in 24 h were over limits.max_request_bytes ${config.limits.max_request_bytes}`,
      'raise limits.max_request_bytes',
    ],
    [
      'paused',
      'missed: paused',
      'warn',
      (n) => `${n} job(s) refused in 24 h while the agent was paused`,
      'pause less, or set quiet hours where no jobs come',
    ],
    [
      'draining',
      'missed: stopping',
      'ok',
      (n) => `${n} job(s) refused in 24 h while the agent stopped`,
      undefined,
    ],
  ];
  for (const [refusal, name, level, detail, fix] of simple) {
    const n = count(refusal);
    if (n > 0) out.push(check(name, level, detail(n), fix));
  }
  for (const m of missed.filter((x) => x.refusal === 'model_not_loaded')) {
    // The model ids are the coordinator's: folded, and past the most missed few one line says how many.
    out.push(
      m.model === null
        ? check(
            'missed: model',
            'warn',
            `and ${m.n} job(s) in 24 h for ${m.models} more model(s) no engine here serves`,
          )
        : check(
            'missed: model',
            'warn',
            `${m.n} job(s) in 24 h asked for ${engineText(m.model, 512)}, which no engine here serves`,
            'load it in an engine if you want those jobs',
          ),
    );
  }
  if (missed.length === 0) out.push(check('missed jobs', 'ok', 'none in 24 h'));
  return out;
}

/** The models whose energy doctor compares with their earnings: those that earned most, in SQL. */
const ENERGY_MODELS = 100;
/** The lines said about models under their energy cost; past them, one line says how many more. */
const LOSING_SAID = 5;

/**
 * Issue 31: a model whose earnings per kWh in 7 days were below what its energy cost at the tariff (it
 * loses money on electricity) is a warning; nothing is said without energy in the ledger or a price.
 * Only models with energy measured are read, at most ENERGY_MODELS (the SQL cuts the list: the model
 * ids of refused jobs are the coordinator's, any number of them).
 */
function energyChecks(ledger: Ledger, config: Readonly<Config>, now: number): Check[] {
  const parsed = energySection.safeParse((config as { energy?: unknown }).energy ?? {});
  const tariff = tariffOf(parsed.success ? parsed.data : undefined);
  if (!tariff.priced) return [];
  const report = earningsReport(ledger, {
    since: now - 7 * 86_400_000,
    by: 'model',
    now,
    tariff,
    top: ENERGY_MODELS,
    measured: true,
  });
  const losing = report.rows.filter(
    (r) => r.net_usdc !== null && r.net_usdc < 0 && r.energy_kwh && r.energy_cost_usdc !== null,
  );
  const lines = losing
    .slice(0, LOSING_SAID)
    .map((r) =>
      check(
        'energy',
        'warn',
        `${engineText(r.group, 512)} earned ${(r.usdc_per_kwh ?? 0).toFixed(4)} USDC per kWh in 7 days, under its energy cost of ${(r.energy_cost_usdc! / r.energy_kwh!).toFixed(4)} USDC per kWh (net ${r.net_usdc!.toFixed(6)} USDC)`,
        'raise its price in [pricing], or stop serving it when electricity is dear',
      ),
    );
  const unsaid = losing.length - lines.length;
  const unread = report.more?.groups ?? 0;
  const more = [
    ...(unsaid > 0 ? [`and ${unsaid} more model(s) under their energy cost in 7 days`] : []),
    ...(unread > 0 ? [`${unread} model(s) with energy measured that earned less were not compared`] : []),
  ];
  if (more.length > 0)
    lines.push(
      check(
        'energy',
        unsaid > 0 ? 'warn' : 'ok',
        more.join('; '),
        'see `usepod-agent earnings --since 7d --by model`',
      ),
    );
  return lines;
}

function ago(ms: number): string {
  const m = Math.round(ms / 60_000);
  if (m < 60) return `${m} min`;
  const h = Math.round(m / 60);
  return h < 48 ? `${h} h` : `${Math.round(h / 24)} days`;
}
