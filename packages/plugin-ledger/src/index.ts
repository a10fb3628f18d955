import { type Config, definePlugin } from '@usepod-agent/core';
import { z } from 'zod';
import { ledgerChecks } from './doctor.js';
import { ledgerPath } from './ledger.js';
import { LedgerWriter } from './writer.js';

export { ledgerChecks } from './doctor.js';
export {
  type EarningsRow,
  earnings,
  earningsCsv,
  GROUPINGS,
  type Grouping,
  MISSED_REFUSALS,
  parseSince,
} from './earnings.js';
export { LEDGER_SCHEMA_VERSION, Ledger, LedgerOpenError, ledgerPath } from './ledger.js';
export { openLedger } from './open.js';
export { type SelfTestHistoryRow, selftestHistory } from './selftests.js';

/**
 * The operator's ledger (issue 18) as a feature plugin (issue 27): `[ledger]`, on by default. Every job the
 * agent receives is a row written before its terminal frame (the agent's journal), every self-test too,
 * by a worker thread (issue 28: the relay never waits on the disk); rows older than `retention_days` are
 * pruned at start; the Prometheus counters resume from its sums. `usepod-agent earnings` and
 * `selftest --history` read the same file.
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

/** Tuning for tests and embedders; `[ledger]` in agent.toml is the operator's. */
export interface LedgerPluginOptions {
  /** Records kept for a retry while the ledger cannot be written (default 10,000: a few MB). */
  maxPending?: number;
  /** The first retry's delay after a failed write, ms (default 1,000; doubling up to a minute). */
  retryMs?: number;
  /** How long a write waits for another process's lock, ms (default 5,000). */
  busyMs?: number;
}

// biome-ignore lint/suspicious/noConfusingVoidType: `void` lets `ledgerPlugin()` be called without options.
export default definePlugin((opts: LedgerPluginOptions | void) => ({
  name: '@usepod-agent/plugin-ledger',
  apiVersion: 1,
  sections: ['ledger'],
  apply(hooks, ctx) {
    const o: LedgerPluginOptions = opts ?? {};
    const cfg = ctx.section('ledger', ledgerSection) ?? ledgerSection.parse({});
    const path = ledgerPath(cfg.path, ctx.keyPath);
    ctx.doctorCheck('ledger', (facts) => ledgerChecks(path, ctx.config, facts));
    if (!path) {
      ctx.statusSection('ledger', () => ({ file: null }));
      return;
    }
    const writer = new LedgerWriter({
      path,
      log: ctx.log,
      notify: (n) => ctx.notify(n),
      maxPending: o.maxPending ?? 10_000,
      retryMs: o.retryMs ?? 1_000,
      busyMs: o.busyMs ?? 5_000,
    });
    const mine = ctx.provideJournal({
      write: (records) => writer.write(records),
      totals: (before) => writer.totals(before),
    });
    // The agent was given a journal of its own (embedding code, a test): this ledger stands down.
    if (!mine) return;
    hooks.onStart.tapPromise('ledger', async () => {
      writer.attachMetrics(ctx.metrics);
      const pruned = await writer.prune(cfg.retention_days);
      await writer.refreshSummary();
      if (writer.recording && writer.failing === undefined)
        ctx.log.info('ledger open', { file: path, ...(pruned ? { pruned } : {}) });
    });
    hooks.onEvent.tap('ledger', (e) => {
      if (e.type === 'selftest') writer.selftest(e.result);
    });
    hooks.onClose.tapPromise('ledger', () => writer.close());
    ctx.statusSection('ledger', () => {
      const figures = writer.summary();
      return {
        file: path,
        recording: writer.recording,
        ...(writer.failing === undefined ? {} : { failing: writer.failing, pending: writer.pending }),
        ...figures,
      };
    });
  },
}));
