import { loadPluginForKind } from '@usepod-agent/core/internal';
import { BaseCommand, jsonFlag } from '../base.js';
import { checkAlerts } from '../features.js';
import { installedBackendPlugins, pluginSearchRoots } from '../plugins.js';

export default class Validate extends BaseCommand {
  static override summary = 'Check the config file and that a plugin provides every backend kind.';
  static override examples = [
    '<%= config.bin %> validate',
    '<%= config.bin %> validate --config ./agent.toml --json',
  ];
  static override flags = {
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Validate);
    const { config, path } = await this.readConfig(flags);
    const kinds = [...new Set(config.backends.map((b) => b.kind))];
    const plugins: Record<string, string> = {};
    const installed = await installedBackendPlugins(this.config);
    for (const kind of kinds) {
      const own = installed.find((p) => p.kinds?.includes(kind));
      plugins[kind] = own
        ? own.name
        : (await loadPluginForKind(kind, { searchRoots: pluginSearchRoots(this.config) })).name;
    }
    const alerts = await checkAlerts(config);
    if (flags.json) {
      this.printJson({
        ok: true,
        file: path,
        coordinator: config.coordinator.url,
        identity: config.identity.key_path,
        backends: config.backends.map((b) => ({
          kind: b.kind,
          url: b.url,
          api_key_env: b.api_key_env,
          plugin: plugins[b.kind],
        })),
        limits: config.limits,
        alerts,
      });
      return;
    }
    this.out(`ok: ${path}`);
    this.out(`  coordinator  ${config.coordinator.url}`);
    this.out(`  identity     ${config.identity.key_path}`);
    this.out(`  backends     ${config.backends.length === 0 ? '(none)' : ''}`);
    for (const b of config.backends) {
      this.out(`    - ${b.kind} ${b.url ?? `(key from $${b.api_key_env})`}  [${plugins[b.kind]}]`);
    }
    if (alerts.length > 0) this.out(`  alerts       ${alerts.join(', ')}`);
    this.out(
      `  limits       max_concurrent=${config.limits.max_concurrent} max_tokens_per_minute=${config.limits.max_tokens_per_minute ?? 'none'}`,
    );
  }
}
