import { type Config, definePlugin } from '@usepod-agent/core';
import { z } from 'zod';
import { ledgerChecks } from './doctor.js';
import { earnings } from './earnings.js';
import { Ledger, ledgerPath, seedGroups } from './ledger.js';

export { ledgerChecks } from './doctor.js';
export {
  type EarningsRow,
  earnings,
  GROUPINGS,
  type Grouping,
  MISSED_REFUSALS,
  parseSince,
} from './earnings.js';
export { LEDGER_SCHEMA_VERSION, Ledger, ledgerPath, seedGroups } from './ledger.js';
export { type SelfTestHistoryRow, selftestHistory } from './selftests.js';

/**
 * The operator's ledger (issue 18) as a feature plugin (issue 27): `[ledger]`, on by default. Every job the
 * agent receives is a row written before its terminal frame (the agent's journal), every self-test too;
 * rows older than `retention_days` are pruned at start; the Prometheus counters resume from its sums.
 * `usepod-agent earnings` and `selftest --history` read the same file.
 */
export const ledgerSection = z.strictObject({
  /** A file, or "off"; default `ledger.db` beside the identity key. */
  path: z.string().min(1).optional(),
  retention_days: z.number().int().min(1).max(36_500).default(400),
});
export type LedgerSection = z.output<typeof ledgerSection>;

/**
 * The ledger file a config names, for the commands that read it (`earnings`, `selftest --history`,
 * `status`): `[ledger] path`, else beside the key; undefined when "off". A section with mistakes is
 * `validate`'s to report: it reads as the default here.
 */
export function ledgerFile(config: Readonly<Config>): string | undefined {
  const parsed = ledgerSection.safeParse(config.ledger ?? {});
  return ledgerPath(parsed.success ? parsed.data.path : undefined, config.identity.key_path);
}

interface Window {
  served: number;
  missed: number;
  failed: number;
  earnings_usdc: number;
}

/** Today and the last 7 days, for `status`. */
function summary(ledger: Ledger, now = new Date()): { today: Window; last_7_days: Window } {
  const window = (since: number): Window =>
    earnings(ledger, { since, by: 'backend' }).reduce(
      (t, r) => ({
        served: t.served + r.served,
        missed: t.missed + r.missed,
        failed: t.failed + r.failed,
        earnings_usdc: t.earnings_usdc + r.earnings_usdc,
      }),
      { served: 0, missed: 0, failed: 0, earnings_usdc: 0 },
    );
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  return { today: window(midnight), last_7_days: window(now.getTime() - 7 * 86_400_000) };
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-ledger',
  apiVersion: 1,
  sections: ['ledger'],
  apply(hooks, ctx) {
    const cfg = ctx.section('ledger', ledgerSection) ?? ledgerSection.parse({});
    const path = ledgerPath(cfg.path, ctx.keyPath);
    ctx.doctorCheck('ledger', (facts) => ledgerChecks(path, ctx.config, facts));
    if (!path) {
      ctx.statusSection('ledger', () => ({ file: null }));
      return;
    }
    let ledger: Ledger | undefined;
    // Opened by the first need of it (a job may end before onStart), synchronously.
    const open = () => {
      ledger ??= Ledger.open(path);
      return ledger;
    };
    const mine = ctx.provideJournal({
      write: (records) => open().write(records),
      totals: (before) => seedGroups(open(), before),
    });
    // The agent was given a journal of its own (embedding code, a test): this ledger stands down.
    if (!mine) return;
    hooks.onStart.tapPromise('ledger', async () => {
      const pruned = open().prune(cfg.retention_days);
      ctx.log.info('ledger open', { file: path, ...(pruned ? { pruned } : {}) });
    });
    let told = false;
    hooks.onEvent.tap('ledger', (e) => {
      if (e.type !== 'selftest') return;
      try {
        open().writeSelfTest(e.result);
      } catch (err) {
        if (!told) ctx.log.warn('ledger write failed; self-tests are not recorded', { error: String(err) });
        told = true;
      }
    });
    hooks.onClose.tapPromise('ledger', async () => {
      ledger?.close();
      ledger = undefined;
    });
    ctx.statusSection('ledger', () => (ledger ? { file: path, ...summary(ledger) } : { file: path }));
  },
}));
