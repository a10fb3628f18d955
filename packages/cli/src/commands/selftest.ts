import { Flags } from '@oclif/core';
import {
  createLogger,
  engineText,
  expandHome,
  isUsepodError,
  type SelfTestResult,
} from '@usepod-agent/core/internal';
import { BaseCommand, jsonFlag } from '../base.js';
import { control } from '../control.js';
import { builtinPlugins } from '../engines.js';
import { installedBackendPlugins } from '../plugins.js';
import { selftestConfigured, type Untested } from '../selftest.js';

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
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Selftest);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    let results: SelfTestResult[];
    let untested: Untested[] = [];
    let from: 'agent' | 'engines' = 'agent';
    try {
      // The agent's round waits for room and covers every pair; its answer can take a while.
      const reply = await control(expandHome(config.identity.key_path), { cmd: 'selftest' }, 15 * 60_000);
      if (!reply.ok) this.error(reply.error ?? 'the agent refused the self-test', { exit: 1 });
      results = (reply.selftest ?? []).filter((r) => !flags.model || r.model === flags.model);
    } catch (err) {
      if (!isUsepodError(err) || err.code !== 'USEPOD_AGENT_NOT_RUNNING') throw err;
      from = 'engines';
      const plugins = [...(await builtinPlugins()), ...(await installedBackendPlugins(this.config))];
      ({ results, untested } = await selftestConfigured(config, plugins, {
        log: createLogger('selftest'),
        model: flags.model,
      }));
    }
    if (flags.json) return this.printJson({ from, results, untested });
    this.#table(results, untested, from);
    if (results.some((r) => !r.ok) || untested.length > 0) process.exitCode = 1;
  }

  #table(results: SelfTestResult[], untested: Untested[], from: 'agent' | 'engines'): void {
    if (results.length === 0 && untested.length === 0) {
      this.out('Nothing to test: no engine is configured (see `usepod-agent backends`).');
      return;
    }
    const rows = [
      ...results.map((r) => [
        r.backend,
        engineText(r.model, 80),
        r.ok ? 'ok' : r.withdrawn ? 'withdrawn' : 'failed',
        r.ttftMs !== undefined ? `${Math.round(r.ttftMs)} ms` : '-',
        r.tokensPerSecond !== undefined ? r.tokensPerSecond.toFixed(1) : '-',
        r.ok ? `${r.tokens ?? 0} tokens` : (r.error ?? ''),
      ]),
      ...untested.map((u) => [u.backend, '-', 'untested', '-', '-', u.why]),
    ];
    const head = ['BACKEND', 'MODEL', 'RESULT', 'TTFT', 'TOK/S', 'NOTE'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2);
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('')
        .trimEnd();
    this.out(line(head));
    for (const r of rows) this.out(line(r));
    if (from === 'engines') this.out('(no agent running: the engines were tested directly)');
  }
}
