import { type Agent, createAgent, createLogger, errorMessage, expandHome } from '@usepod-agent/core/internal';
import { BaseCommand, EXIT, logFormatFlag } from '../base.js';
import { restorePause, serveControl } from '../control.js';
import { builtinPlugins, knownKinds } from '../engines.js';
import { featurePlugins } from '../features.js';
import { engineProcessNames, startGpuYield, yieldEnabled } from '../gpu-yield.js';
import { Ledger, ledgerPath, seedGroups } from '../ledger/ledger.js';
import { installedBackendPlugins, pluginSearchRoots } from '../plugins.js';

export default class Run extends BaseCommand {
  static override summary = 'Connect to the coordinator and serve inference jobs until stopped.';
  static override description =
    `Loads the config, the identity key (created on first run) and the backend plugins, probes the engines, then keeps a connection to the Use Pod coordinator open, reconnecting forever. SIGINT or SIGTERM drains: new jobs are refused, jobs in flight get up to limits.drain_timeout_s to finish, then the agent exits 0. A second signal stops at once.`;
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
    this.setupLogging(
      flags['log-level'] ?? config.observability.log_level,
      flags['log-format'] ?? config.observability.log_format,
    );
    const log = createLogger('agent');
    for (const w of warnings) log.warn(w);
    // The ledger opens once the agent has started, so a broken identity or plugin is reported first; a job
    // that ends before then opens it on its way (Ledger.open is synchronous).
    const plugins = [...(await installedBackendPlugins(this.config)), ...(await featurePlugins(config))];
    const path = ledgerPath(config);
    let ledger: Ledger | undefined;
    const journal = path
      ? {
          write: (records: Parameters<Ledger['write']>[0]) => {
            ledger ??= Ledger.open(path);
            ledger.write(records);
          },
        }
      : undefined;
    const agent = createAgent({
      config,
      allowInsecure: flags['allow-insecure'],
      logger: log,
      plugins,
      pluginSearchRoots: pluginSearchRoots(this.config),
      ...(journal ? { journal } : {}),
    });
    const keyPath = expandHome(config.identity.key_path);
    // A pause from before a restart holds from the first connection on.
    await restorePause(agent, keyPath);
    const startedAt = Date.now();
    // The engines' process names for [yield], before start: nothing slow stands between start and signals.
    // Only [yield] needs them: importing every first-party plugin is not start-up work otherwise.
    const kinds = yieldEnabled(config) ? await knownKinds([...(await builtinPlugins()), ...plugins]) : [];
    await agent.start();
    // Signals are handled from here on: a SIGTERM during the rest of the start-up drains too.
    const stopped = waitForSignals(agent, log);
    // `usepod-agent pause` / `resume`: a socket beside the key, for this user only.
    const controlServer = await serveControl(agent, keyPath).catch((err: unknown) => {
      log.warn('pause and resume are unavailable: the control socket could not be opened', {
        error: errorMessage(err),
      });
      return undefined;
    });
    if (path) {
      try {
        ledger ??= Ledger.open(path);
      } catch (err) {
        await agent.stop();
        throw err;
      }
      const pruned = ledger.prune(config.ledger.retention_days);
      log.info('ledger open', { file: ledger.path, ...(pruned ? { pruned } : {}) });
      // Counters resume where the ledger left them: a restart does not zero Prometheus' totals.
      // Rows of this run (a job may have ended already) are counted by the agent itself.
      agent.metrics.seed(seedGroups(ledger, startedAt));
      // Each self-test too: the speed of every model over time (`usepod-agent selftest --history`).
      let told = false;
      agent.on('selftest', (r) => {
        try {
          ledger?.writeSelfTest(r);
        } catch (err) {
          if (!told)
            log.warn('ledger write failed; self-tests are not recorded', { error: errorMessage(err) });
          told = true;
        }
      });
    }
    const stopYield = startGpuYield(agent, config, engineProcessNames(config, kinds), log.child('yield'));
    await stopped;
    stopYield();
    controlServer?.close();
    ledger?.close();
    this.exit(EXIT.OK);
  }
}

/** First signal: graceful drain. Second: stop at once. */
function waitForSignals(agent: Agent, log: ReturnType<typeof createLogger>): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn('second signal: stopping now', { signal: sig });
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      log.info('stopping: draining jobs in flight', { signal: sig });
      agent.stop().then(resolve, (err: unknown) => {
        log.error('stop failed', { error: errorMessage(err) });
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
