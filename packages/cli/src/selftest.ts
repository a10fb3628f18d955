import {
  type AgentPlugin,
  type Config,
  createBackends,
  Discovery,
  type Logger,
  PluginHost,
  SelfTest,
  type SelfTestResult,
  selfTestSettings,
} from '@usepod-agent/core/internal';

/**
 * `usepod-agent selftest` with no agent running: the configured engines are opened through their
 * plugins, probed, and each model they serve gets the self-test the agent runs (routing/selftest.ts).
 * What cannot be tested (an engine down, a key not set) comes back as a reason, not as an exception.
 */

export interface Untested {
  backend: string;
  kind: string;
  why: string;
}

export async function selftestConfigured(
  config: Config,
  plugins: AgentPlugin[],
  opts: { log: Logger; model?: string | undefined; env?: NodeJS.ProcessEnv },
): Promise<{ results: SelfTestResult[]; untested: Untested[] }> {
  const host = new PluginHost({ config, log: opts.log });
  for (const p of plugins) await host.apply(p);
  const untested: Untested[] = [];
  // The agent's own parts: its backends (a key not set is a row, not a warning) and its probing.
  const backends = createBackends(host, config, opts.env ?? process.env, opts.log, (entry, i, why) =>
    untested.push({ backend: entry.name ?? `backends[${i}]`, kind: entry.kind, why }),
  );
  const discovery = new Discovery({
    backends,
    priority: host.priority,
    intervalMs: 0,
    probeTimeoutMs: 5_000,
    log: opts.log,
    onChange: () => {},
  });
  try {
    await discovery.probeAll();
    for (const s of discovery.states) {
      if (!s.status?.healthy)
        untested.push({ backend: s.backend.label, kind: s.backend.kind, why: s.status?.detail ?? 'down' });
    }
    const targets = discovery.listed().filter((t) => !opts.model || t.model === opts.model);
    const selftest = new SelfTest({
      targets: () => targets,
      busy: () => false,
      intervalMs: 0,
      ...selfTestSettings(config.selftest),
      log: opts.log,
    });
    return { results: await selftest.run(), untested };
  } finally {
    await discovery.stop();
    await Promise.all(backends.map((b) => b.close().catch(() => {})));
  }
}

/**
 * The labels of this config's backends, made as the agent makes them (no engine is contacted): the running
 * agent's self-tests are this config's only if they name these (issue 28: `selftest -c other.toml` tested
 * the running agent's engines when the two configs shared an identity).
 */
export async function configuredLabels(
  config: Config,
  plugins: AgentPlugin[],
  log: Logger,
): Promise<Set<string>> {
  const host = new PluginHost({ config, log });
  for (const p of plugins) await host.apply(p);
  const backends = createBackends(host, config, process.env, log, () => {});
  await Promise.all(backends.map((b) => b.close().catch(() => {})));
  return new Set(backends.map((b) => b.label));
}
