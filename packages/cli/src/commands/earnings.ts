import { existsSync } from 'node:fs';
import { Flags } from '@oclif/core';
import { engineText } from '@usepod-agent/core';
import {
  earnings,
  earningsCsv,
  GROUPINGS,
  ledgerFile,
  openLedger,
  parseSince,
} from '@usepod-agent/plugin-ledger';
import { BaseCommand, failUsage, jsonFlag } from '../base.js';

export default class Earnings extends BaseCommand {
  static override summary = 'What you earned, served and missed, from the ledger on this machine.';
  static override description =
    'Reads the ledger (one row per job received, kept across restarts; [ledger] in the config) and sums it by model, backend, day or hour: jobs served, failed and missed (refused at capacity or for a model not loaded), tokens, estimated earnings in USDC (tokens times the prices advertised then; the coordinator bills by its own count), output tokens per second, and the share of the time jobs were in flight.';
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
    const ledger = openLedger(path, { readonly: true });
    try {
      const rows = earnings(ledger, { since, by: flags.by });
      if (flags.json) {
        this.printJson({ since: new Date(since).toISOString(), by: flags.by, ledger: ledger.path, rows });
        return;
      }
      if (flags.csv) {
        // The same in every locale; a coordinator's `=HYPERLINK(...)` stays text in the spreadsheet.
        process.stdout.write(earningsCsv(rows));
        return;
      }
      this.#table(rows, flags.by, since);
    } finally {
      ledger.close();
    }
  }

  #table(rows: ReturnType<typeof earnings>, by: string, since: number): void {
    this.out(`Since ${new Date(since).toISOString()}, by ${by}:`);
    if (rows.length === 0) {
      this.out('No jobs in this window.');
      return;
    }
    const head = ['', 'SERVED', 'FAILED', 'MISSED', 'TOKENS IN', 'TOKENS OUT', 'USDC', 'TOK/S', 'BUSY'];
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
    ]);
    const total = rows.reduce(
      (t, r) => ({
        served: t.served + r.served,
        failed: t.failed + r.failed,
        missed: t.missed + r.missed,
        in: t.in + r.input_tokens,
        out: t.out + r.output_tokens,
        usdc: t.usdc + r.earnings_usdc,
      }),
      { served: 0, failed: 0, missed: 0, in: 0, out: 0, usdc: 0 },
    );
    cells.push([
      'total',
      String(total.served),
      String(total.failed),
      String(total.missed),
      String(total.in),
      String(total.out),
      total.usdc.toFixed(6),
      '',
      '',
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const line = (c: string[]) =>
      c
        .map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
        .join('  ')
        .trimEnd();
    this.out(line(head));
    for (const c of cells) this.out(line(c));
  }
}
