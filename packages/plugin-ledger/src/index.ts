import { type Config, definePlugin } from '@usepod-agent/core';
import { z } from 'zod';
import { ledgerChecks } from './doctor.js';
import { ledgerPath } from './ledger.js';
import { LedgerWriter } from './writer.js';

export { ledgerChecks, missedChecks } from './doctor.js';
export {
  type EarningsReport,
  type EarningsRow,
  type EarningsTotals,
  earnings,
  earningsCsv,
  earningsReport,
  GROUPINGS,
  type Grouping,
  MISSED_REFUSALS,
  type PriceAt,
  parseSince,
} from './earnings.js';
export { LEDGER_SCHEMA_VERSION, Ledger, LedgerOpenError, ledgerPath, type MissedRow } from './ledger.js';
export { openLedger } from './open.js';
export { type SelfTestHistoryRow, selftestHistory } from './selftests.js';
export type { LedgerSeries } from './series.js';
export { ledgerReader } from './thread.js';
export type { WorkerReply as LedgerReply, WorkerRequest as LedgerRequest } from './worker.js';

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

/**
 * Another plugin's energy figures (the GPU plugin's `energy.job` and `energy.period`, docs/hooks.md):
 * untrusted, so parsed and bounded here; anything else is ignored. A job uses at most 100 kWh, a period
 * between two polls lasts at most a day.
 */
const WH = z.number().finite().min(0).max(100_000);
const jobEnergy = z.object({ jobId: z.string().min(1).max(512), wh: WH });
const periodEnergy = z
  .object({
    from: z.number().int().min(0).max(8.64e15),
    to: z.number().int().min(0).max(8.64e15),
    servingWh: WH,
    idleWh: WH,
  })
  .refine((p) => p.to > p.from && p.to - p.from <= 86_400_000);

function energyMessage(topic: string, data: unknown, writer: LedgerWriter): void {
  if (topic === 'energy.job') {
    const m = jobEnergy.safeParse(data);
    if (m.success) writer.energy(m.data.jobId, m.data.wh);
  } else if (topic === 'energy.period') {
    const m = periodEnergy.safeParse(data);
    if (m.success) writer.period(m.data);
  }
}

/** Tuning for tests and embedders; `[ledger]` in agent.toml is the operator's. */
export interface LedgerPluginOptions {
  /** Records kept for a retry while the ledger cannot be written (default 10,000: a few MB). */
  maxPending?: number;
  /** The first retry's delay after a failed write, ms (default 1,000; doubling up to a minute). */
  retryMs?: number;
  /** How long a write waits for another process's lock, ms (default 5,000). */
  busyMs?: number;
  /** The most pages (4 KiB) the ledger file may grow to; past it writes fail as on a full disk (default: none). */
  maxPages?: number;
  /** How long the ledger's thread stays with nothing to do before it ends, ms (default 30,000). */
  lingerMs?: number;
  /** How long the GPUs' energy periods wait for a record to go with, ms (default 900,000: a quarter hour). */
  periodsHeldMs?: number;
  /** Told when the ledger's thread starts (true) and ends (false). */
  onThread?: (running: boolean) => void;
  /**
   * How long the ledger's thread may take to answer before it is taken for hung (a disk that does not
   * answer), ms (default 30,000; keep it above `busyMs`).
   */
  answerMs?: number;
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
      maxPages: o.maxPages,
      lingerMs: o.lingerMs,
      periodsHeldMs: o.periodsHeldMs,
      onThread: o.onThread,
      answerMs: o.answerMs,
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
      // The thread is warmed at a job's start: its terminal frame waits for its record (decision 0006).
      if (e.type === 'job_start') writer.jobStarted(e.jobId);
      else if (e.type === 'job_end') writer.jobEnded(e.job.jobId);
      else if (e.type === 'selftest') writer.selftest(e.result);
      else if (e.type === 'plugin') energyMessage(e.topic, e.data, writer);
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
