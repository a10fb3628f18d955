import * as Flags from '@oclif/core/flags';
import { loadConfig, type SelfTestResult } from '@usepod-agent/core';
import { expandHome, findConfigFile, statusSelfTest } from '@usepod-agent/core/cli';
import { runningSelfTests } from '@usepod-agent/plugin-control';
import { BaseCommand, jsonFlag } from '../base.js';
import {
  builtinPlugins,
  modelIdHint,
  probeConfigured,
  probeEngines,
  usualPorts,
  wellKnownEngines,
} from '../engines.js';
import { agentPlugins } from '../plugins.js';

export default class Backends extends BaseCommand {
  static override summary =
    'Probe the configured engines and the usual local ports, and show what each serves.';
  static override examples = ['<%= config.bin %> backends', '<%= config.bin %> backends --no-detect --json'];
  static override flags = {
    detect: Flags.boolean({ summary: 'Also probe the usual local ports.', default: true, allowNo: true }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Backends);
    const plugins = [...(await builtinPlugins()), ...(await agentPlugins(this.config))];
    const file = flags.config ?? (await findConfigFile());
    const config = file ? (await loadConfig({ path: file, allowInsecure: true })).config : undefined;
    // The configured backends, opened as `run` opens them; the usual ports, unless configured already.
    const configured = config?.backends ?? [];
    const detected = flags.detect
      ? (await wellKnownEngines(plugins)).filter(
          (e) =>
            !configured.some(
              (b) => b.kind === e.kind && b.url && new URL(b.url).port === new URL(e.url).port,
            ),
        )
      : [];
    const [fromConfig, found, tested] = await Promise.all([
      config ? probeConfigured(this.config, config) : [],
      probeEngines(
        detected.map((e) => ({ ...e, source: 'detected' as const })),
        plugins,
      ),
      // What the running agent's self-tests measured ([selftest]), when one runs with this config.
      config ? runningSelfTests(expandHome(config.identity.key_path)) : ([] as SelfTestResult[]),
    ]);
    const results = [...fromConfig, ...found];
    const selftestOf = (label: string | undefined, model: string) =>
      tested.find((x) => x.backend === label && x.model === model);
    const shown = results.filter((r) => r.source !== 'detected' || r.status.healthy);
    if (flags.json) {
      this.printJson(
        shown.map((r) => ({
          kind: r.kind,
          url: r.url ?? null,
          source: r.source,
          healthy: r.status.healthy,
          detail: r.status.detail ?? null,
          latency_ms: r.latencyMs,
          models: r.status.models.map((m) => {
            const st = selftestOf(r.label, m.id);
            return {
              id: m.id,
              context_window: m.contextWindow ?? null,
              loaded: true,
              selftest: st ? statusSelfTest(st) : null,
              hint: modelIdHint(m.id, r.naming) ?? null,
            };
          }),
          load: r.status.load ?? null,
        })),
      );
      return;
    }
    if (shown.length === 0) {
      this.out(`No engine configured or found on the usual ports (${await usualPorts(plugins)}).`);
      return;
    }
    // Columns as wide as their longest cell (a plugin's kind or a model id can be long), two spaces apart.
    const width = (head: string, cells: string[]) => Math.max(head.length, ...cells.map((c) => c.length)) + 2;
    const kindW = width(
      'KIND',
      shown.map((r) => r.kind),
    );
    const urlW = width(
      'URL',
      shown.map((r) => r.url ?? '(preset)'),
    );
    const modelW = width(
      'MODEL',
      shown.flatMap((r) => r.status.models.map((m) => m.id)),
    );
    // The self-test columns appear when the running agent has measured something.
    const speed = tested.length > 0;
    const speedOf = (label: string | undefined, model: string) => {
      if (!speed) return '';
      const st = selftestOf(label, model);
      const ttft = st?.ttftMs !== undefined ? `${Math.round(st.ttftMs)}ms` : '-';
      const rate = st?.tokensPerSecond !== undefined ? st.tokensPerSecond.toFixed(1) : '-';
      return `${ttft.padEnd(9)}${rate.padEnd(8)}${st?.withdrawn ? 'withdrawn' : ''}`;
    };
    this.out(
      `${'KIND'.padEnd(kindW)}${'URL'.padEnd(urlW)}${'HEALTH'.padEnd(8)}${'LATENCY'.padEnd(9)}${'MODEL'.padEnd(modelW)}${'CONTEXT'.padEnd(9)}LOADED${speed ? `  ${'TTFT'.padEnd(9)}${'TOK/S'.padEnd(8)}SELFTEST` : ''}`.trimEnd(),
    );
    for (const r of shown) {
      const head = `${r.kind.padEnd(kindW)}${(r.url ?? '(preset)').padEnd(urlW)}${(r.status.healthy ? 'up' : 'down').padEnd(8)}${`${r.latencyMs}ms`.padEnd(9)}`;
      if (!r.status.healthy) {
        this.out(`${head}${r.status.detail ?? ''}`);
        continue;
      }
      if (r.status.models.length === 0) this.out(`${head}(no models)`);
      r.status.models.forEach((m, i) => {
        this.out(
          `${i === 0 ? head : ' '.repeat(head.length)}${m.id.padEnd(modelW)}${String(m.contextWindow ?? '?').padEnd(9)}yes${speed ? `     ${speedOf(r.label, m.id)}` : ''}`.trimEnd(),
        );
      });
    }
    for (const hint of shown.flatMap((r) => r.status.models.map((m) => modelIdHint(m.id, r.naming))))
      if (hint) this.out(`hint: ${hint}`);
  }
}
