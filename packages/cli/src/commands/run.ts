import { createAgent, createLogger } from '@usepod-agent/core';
import { BaseCommand, EXIT, logFormatFlag } from '../base.js';
import { agentPlugins, pluginSearchRoots } from '../plugins.js';
import { untilSignalled } from '../signals.js';

export default class Run extends BaseCommand {
  static override summary = 'Connect to the coordinator and serve inference jobs until stopped.';
  static override description =
    `Loads the config, the identity key (created on first run) and the plugins (the configured kinds and sections, the ledger and the control socket by default), probes the engines, then keeps a connection to the Use Pod coordinator open, reconnecting forever. SIGINT or SIGTERM drains: new jobs are refused, jobs in flight get up to limits.drain_timeout_s to finish, then the agent exits 0. A second signal stops at once.`;
  static override examples = [
    '<%= config.bin %> run',
    '<%= config.bin %> run --config /etc/usepod-agent/agent.toml --log-level debug',
    '<%= config.bin %> run --config ./agent.toml --allow-insecure   # a local ws:// coordinator',
  ];
  static override flags = {
    'log-format': logFormatFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Run);
    const { config, warnings } = await this.readConfig(flags);
    await this.setupLogging(
      flags['log-level'] ?? config.observability.log_level,
      flags['log-format'] ?? config.observability.log_format,
    );
    const log = createLogger('agent');
    for (const w of warnings) log.warn(w);
    const agent = createAgent({
      config,
      allowInsecure: flags['allow-insecure'],
      logger: log,
      plugins: await agentPlugins(this.config),
      pluginSearchRoots: pluginSearchRoots(this.config),
    });
    await agent.start();
    await untilSignalled(agent, log);
    this.exit(EXIT.OK);
  }
}
