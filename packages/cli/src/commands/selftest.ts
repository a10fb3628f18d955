import { existsSync } from 'node:fs';
import * as Flags from '@oclif/core/flags';
import {
  type Config,
  createLogger,
  engineText,
  isUsepodError,
  type SelfTestResult,
} from '@usepod-agent/core';
import { expandHome } from '@usepod-agent/core/cli';
import { control } from '@usepod-agent/plugin-control';
import { ledgerFile, openLedger, parseSince, selftestHistory } from '@usepod-agent/plugin-ledger';
import { BaseCommand, failUsage, jsonFlag } from '../base.js';
import { builtinPlugins } from '../engines.js';
import { agentPlugins } from '../plugins.js';
import { configuredLabels, selftestConfigured, type Untested } from '../selftest.js';

export default class Selftest extends BaseCommand {
  static override summary = 'Send a tiny request through every served model and show its speed.';
  static override description =
    "Measures time to first token and tokens per second of each model the configured engines serve, the figures to choose prices by. With the agent running, it runs the agent's own self-test (waiting while customers' jobs fill max_concurrent) and shows which models are withdrawn; otherwise it tests the engines directly. Set [selftest] interval_s for the agent to test on its own and withdraw a model that fails twice in a row.";
  static override examples = [
    '<%= config.bin %> selftest',
    '<%= config.bin %> selftest --model llama3.1:8b --json',
  ];
  static override flags = {
    model: Flags.string({ summary: 'Test only this model.', helpValue: 'ID' }),
    history: Flags.boolean({
      summary: "Show the ledger's record of the agent's self-tests instead of testing now.",
      default: false,
    }),
    since: Flags.string({
      summary: 'With --history: start of the window (24h, 7d, 30d, or a date).',
      default: '7d',
      helpValue: 'WHEN',
      dependsOn: ['history'],
    }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Selftest);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    if (flags.history) return this.#history(config, flags);
    let results: SelfTestResult[] = [];
    let untested: Untested[] = [];
    let from: 'agent' | 'engines' = 'agent';
    let other: string | undefined;
    const plugins = [...(await builtinPlugins()), ...(await agentPlugins(this.config))];
    const log = createLogger('selftest');
    try {
      // The agent's round waits for room and covers every pair; its answer can take a while.
      const reply = await control(expandHome(config.identity.key_path), { cmd: 'selftest' }, 15 * 60_000);
      // Refused (paused: the agent tests nothing then): said so, never the last round's figures as new.
      if (!reply.ok) {
        const error = reply.error ?? 'the agent refused the self-test';
        process.exitCode = 1;
        if (flags.json) return this.printJson({ from, paused: reply.paused, error, results: [], untested });
        this.error(error, { exit: 1 });
      }
      const round = reply.selftest ?? [];
      // An agent answering on this identity but serving other engines ran another config: test this one's.
      const mine = await configuredLabels(config, plugins, log);
      if (round.every((r) => mine.has(r.backend)))
        results = round.filter((r) => !flags.model || r.model === flags.model);
      else
        other = `the agent running with identity ${config.identity.key_path} serves other engines than ${config.source ?? 'this config'}`;
    } catch (err) {
      if (!isUsepodError(err) || err.code !== 'USEPOD_AGENT_NOT_RUNNING') throw err;
      other = 'no agent running';
    }
    if (other) {
      from = 'engines';
      ({ results, untested } = await selftestConfigured(config, plugins, { log, model: flags.model }));
    }
    // Anything failed or untested is exit 1, in every output format.
    if (results.some((r) => !r.ok) || untested.length > 0) process.exitCode = 1;
    if (flags.json) return this.printJson({ from, results, untested, ...(other ? { why: other } : {}) });
    this.#table(results, untested, other);
  }

  /** What the ledger recorded of the agent's self-tests: pass rate and speed per backend and model. */
  #history(config: Config, flags: { since: string; model?: string | undefined; json: boolean }): void {
    const since = parseSince(flags.since);
    if (since === undefined)
      failUsage(this, `--since ${flags.since} is not a duration or a date`, 'use 24h, 7d, 30d or 2026-11-01');
    const path = ledgerFile(config);
    if (!path) failUsage(this, 'the ledger is off ([ledger] path = "off")', 'remove that line to keep one');
    const ledger = existsSync(path) ? openLedger(path, { readonly: true }) : undefined;
    try {
      const rows = ledger
        ? selftestHistory(ledger, { since, ...(flags.model ? { model: flags.model } : {}) })
        : [];
      if (flags.json) {
        this.printJson({ since: new Date(since).toISOString(), ledger: path, rows });
        return;
      }
      if (rows.length === 0) {
        this.out(
          'No self-tests recorded in this window: set [selftest] interval_s for the agent to run them.',
        );
        return;
      }
      const head = ['BACKEND', 'MODEL', 'PASSED', 'TTFT p50', 'TTFT p95', 'TOK/S p50', 'LAST FAILURE'];
      const cells = rows.map((r) => [
        engineText(r.backend, 80),
        engineText(r.model, 80),
        `${r.passed}/${r.tests}`,
        r.ttft_ms_p50 === null ? '-' : `${r.ttft_ms_p50} ms`,
        r.ttft_ms_p95 === null ? '-' : `${r.ttft_ms_p95} ms`,
        r.tokens_per_sec_p50 === null ? '-' : String(r.tokens_per_sec_p50),
        engineText(r.last_error ?? '', 200),
      ]);
      this.#print(head, cells);
    } finally {
      ledger?.close();
    }
  }

  #print(head: string[], rows: string[][]): void {
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2);
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('')
        .trimEnd();
    this.out(line(head));
    for (const r of rows) this.out(line(r));
  }

  #table(results: SelfTestResult[], untested: Untested[], other: string | undefined): void {
    if (results.length === 0 && untested.length === 0) {
      this.out('Nothing to test: no engine is configured (see `usepod-agent backends`).');
      return;
    }
    const rows = [
      ...results.map((r) => [
        engineText(r.backend, 80),
        engineText(r.model, 80),
        r.ok ? 'ok' : r.withdrawn ? 'withdrawn' : 'failed',
        r.ttftMs !== undefined ? `${Math.round(r.ttftMs)} ms` : '-',
        r.tokensPerSecond !== undefined ? r.tokensPerSecond.toFixed(1) : '-',
        r.ok ? `${r.tokens ?? 0} tokens` : (r.error ?? ''),
      ]),
      ...untested.map((u) => [u.backend, '-', 'untested', '-', '-', u.why]),
    ];
    this.#print(['BACKEND', 'MODEL', 'RESULT', 'TTFT', 'TOK/S', 'NOTE'], rows);
    if (other) this.out(`(${other}: this config's engines were tested directly)`);
  }
}
