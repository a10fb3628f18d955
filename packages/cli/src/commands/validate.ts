import { createAgent, silentLogger } from '@usepod-agent/core';
import { BaseCommand, jsonFlag } from '../base.js';
import { agentPlugins, pluginSearchRoots } from '../plugins.js';

export default class Validate extends BaseCommand {
  static override summary = 'Check the config and its plugins as `run` would, without connecting.';
  static override description =
    'Loads the config and every plugin `run` would load (the configured kinds and sections, installed and linked plugins, the defaults), checks each plugin against this agent, each backend entry against its kind and each plugin section against its schema, and says which plugin serves what. Every mistake names its file:line:column. Opens no connection, file or socket.';
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
    const agent = createAgent({
      config,
      allowInsecure: flags['allow-insecure'],
      logger: silentLogger,
      plugins: await agentPlugins(this.config),
      pluginSearchRoots: pluginSearchRoots(this.config),
    });
    await agent.load();
    const pluginOf = (kind: string) => agent.kinds.get(kind)?.plugin;
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
          plugin: pluginOf(b.kind),
        })),
        sections: agent.sections,
        plugins: agent.plugins.map((p) => p.name),
        limits: config.limits,
      });
      return;
    }
    this.out(`ok: ${path}`);
    this.out(`  coordinator  ${config.coordinator.url}`);
    this.out(`  identity     ${config.identity.key_path}`);
    this.out(`  backends     ${config.backends.length === 0 ? '(none)' : ''}`);
    for (const b of config.backends) {
      this.out(`    - ${b.kind} ${b.url ?? `(key from $${b.api_key_env})`}  [${pluginOf(b.kind)}]`);
    }
    for (const [section, plugin] of Object.entries(agent.sections)) {
      this.out(`  [${section}]${' '.repeat(Math.max(1, 11 - section.length))}[${plugin}]`);
    }
    this.out(`  plugins      ${agent.plugins.map((p) => p.name).join(', ')}`);
    this.out(
      `  limits       max_concurrent=${config.limits.max_concurrent} max_tokens_per_minute=${config.limits.max_tokens_per_minute ?? 'none'}`,
    );
  }
}
