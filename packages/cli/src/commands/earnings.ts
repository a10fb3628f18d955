import { existsSync } from 'node:fs';
import * as Flags from '@oclif/core/flags';
import { engineText } from '@usepod-agent/core';
import { energySection, tariffOf } from '@usepod-agent/plugin-gpu/tariff';
import {
  type EarningsReport,
  earningsCsv,
  earningsReport,
  GROUPINGS,
  ledgerFile,
  openLedger,
  parseSince,
} from '@usepod-agent/plugin-ledger';
import { BaseCommand, failUsage, jsonFlag } from '../base.js';

/**
 * The models listed by `--by model`, those that earned most (chosen in SQL); the rest are one line. A
 * refused job keeps the coordinator's model id: 500,000 of them were hundreds of MB read whole.
 */
const MODELS_SHOWN = 50;

export default class Earnings extends BaseCommand {
  static override summary = 'What you earned, served and missed, from the ledger on this machine.';
  static override description =
    'Reads the ledger (one row per job received, kept across restarts; [ledger] in the config) and sums it by model, backend, day or hour: jobs served, failed and missed (refused at capacity or for a model not loaded), tokens, estimated earnings in USDC (tokens times the prices advertised then; the coordinator bills by its own count), output tokens per second, and the share of the time jobs were in flight. With [energy] and a GPU tool, the energy used (kWh), its cost at [energy] price_per_kwh and [[energy.tariff]] periods, the net and USDC per kWh.';
  static override examples = [
    '<%= config.bin %> earnings',
    '<%= config.bin %> earnings --since 30d --by day',
    '<%= config.bin %> earnings --since 2026-11-01 --by model --csv > november.csv',
  ];
  static override flags = {
    since: Flags.string({
      summary: 'Start of the window: 24h, 7d, 30d (m, h, d, w), or a date such as 2026-11-01.',
      default: '7d',
      helpValue: 'WHEN',
    }),
    by: Flags.option({
      options: GROUPINGS,
      summary: 'Group by model, backend, day or hour.',
      default: 'model',
    })(),
    json: jsonFlag,
    csv: Flags.boolean({ summary: 'Print CSV (for a spreadsheet).', default: false, exclusive: ['json'] }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Earnings);
    const since = parseSince(flags.since);
    if (since === undefined) {
      failUsage(
        this,
        `--since ${flags.since} is not a duration or a date`,
        'use 24h, 7d, 30d or a date such as 2026-11-01',
      );
    }
    // It only reads the ledger's path: a ws:// coordinator (it never dials) is no mistake here.
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const path = ledgerFile(config);
    if (!path)
      failUsage(this, 'the ledger is off ([ledger] path = "off")', 'remove that line to keep a ledger');
    if (!existsSync(path)) {
      // A new install: nothing served yet is no mistake.
      if (flags.json)
        this.printJson({ since: new Date(since).toISOString(), by: flags.by, ledger: path, rows: [] });
      else this.out(`No ledger yet at ${path}: \`usepod-agent run\` writes it as jobs arrive.`);
      return;
    }
    // [energy] is validate's to check: a section with mistakes prices nothing here.
    const energy = energySection.safeParse(config.energy ?? {});
    const tariff = tariffOf(energy.success ? energy.data : undefined);
    const ledger = openLedger(path, { readonly: true });
    try {
      const report = earningsReport(ledger, {
        since,
        by: flags.by,
        tariff,
        top: flags.by === 'model' ? MODELS_SHOWN : undefined,
      });
      if (flags.json) {
        this.printJson({
          since: new Date(since).toISOString(),
          by: flags.by,
          ledger: ledger.path,
          ...report,
        });
        return;
      }
      if (flags.csv) {
        // The same in every locale; a coordinator's `=HYPERLINK(...)` stays text in the spreadsheet.
        // Ids folded as in the table: a coordinator's escapes reach a terminal as easily from `--csv`.
        const rows = report.rows.map((r) => ({ ...r, group: engineText(r.group, 512) }));
        process.stdout.write(earningsCsv(rows, report.more, flags.by));
        return;
      }
      this.#table(report, flags.by, since);
    } finally {
      ledger.close();
    }
  }

  #table(report: EarningsReport, by: string, since: number): void {
    const { rows, totals, more } = report;
    this.out(`Since ${new Date(since).toISOString()}, by ${by}:`);
    if (rows.length === 0) {
      this.out('No jobs in this window.');
      return;
    }
    const energy = totals.energy_kwh !== null;
    const priced = totals.energy_cost_usdc !== null;
    const num = (v: number | null, digits: number) => (v === null ? '-' : v.toFixed(digits));
    const head = [
      '',
      'SERVED',
      'FAILED',
      'MISSED',
      'TOKENS IN',
      'TOKENS OUT',
      'USDC',
      'TOK/S',
      'BUSY',
      ...(energy ? ['KWH', ...(priced ? ['COST', 'NET'] : []), 'USDC/KWH'] : []),
    ];
    const energyCells = (r: {
      energy_kwh: number | null;
      energy_cost_usdc: number | null;
      net_usdc: number | null;
      usdc_per_kwh: number | null;
    }) =>
      energy
        ? [
            num(r.energy_kwh, 4),
            ...(priced ? [num(r.energy_cost_usdc, 6), num(r.net_usdc, 6)] : []),
            num(r.usdc_per_kwh, 4),
          ]
        : [];
    const cells = rows.map((r) => [
      // A model id is the coordinator's (up to 512 characters, any): no raw control characters to a terminal.
      engineText(r.group, 512),
      String(r.served),
      String(r.failed),
      String(r.missed),
      String(r.input_tokens),
      String(r.output_tokens),
      r.earnings_usdc.toFixed(6),
      r.tokens_per_sec === null ? '-' : r.tokens_per_sec.toFixed(1),
      `${(r.busy * 100).toFixed(1)}%`,
      ...energyCells(r),
    ]);
    const noEnergy = { energy_kwh: null, energy_cost_usdc: null, net_usdc: null, usdc_per_kwh: null };
    // What the list left out, summed, so the columns still add up to the total.
    if (more)
      cells.push([
        `and ${more.groups} more`,
        String(more.served),
        String(more.failed),
        String(more.missed),
        String(more.input_tokens),
        String(more.output_tokens),
        more.earnings_usdc.toFixed(6),
        '',
        '',
        ...energyCells(noEnergy),
      ]);
    // The total's energy is all the GPUs used in the window, idle time included.
    cells.push([
      'total',
      String(totals.served),
      String(totals.failed),
      String(totals.missed),
      String(totals.input_tokens),
      String(totals.output_tokens),
      totals.earnings_usdc.toFixed(6),
      '',
      '',
      ...energyCells(totals),
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const line = (c: string[]) =>
      c
        .map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
        .join('  ')
        .trimEnd();
    this.out(line(head));
    for (const c of cells) this.out(line(c));
    if (energy && totals.idle_kwh !== null)
      this.out(
        `Energy: ${num(totals.serving_kwh, 4)} kWh serving, ${num(totals.idle_kwh, 4)} kWh idle (in the total).`,
      );
    if (report.energy_note) this.out(`Energy: ${report.energy_note}.`);
  }
}
