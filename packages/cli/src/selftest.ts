import {
  type AgentPlugin,
  type Config,
  createAgent,
  type Logger,
  type SelfTestResult,
} from '@usepod-agent/core';
import { backendLabels, selftestBackends, type Untested } from '@usepod-agent/core/cli';

/**
 * `usepod-agent selftest` with no agent running: the configured engines opened as `run` opens them (the
 * same plugin loading, the same checks), probed, and each model they serve given the agent's self-test.
 */

export type { Untested };

export function selftestConfigured(
  config: Config,
  plugins: AgentPlugin[],
  opts: { log: Logger; model?: string | undefined; env?: NodeJS.ProcessEnv; pluginSearchRoots?: string[] },
): Promise<{ results: SelfTestResult[]; untested: Untested[] }> {
  const agent = createAgent({
    config,
    allowInsecure: true,
    logger: opts.log,
    plugins,
    ...(opts.pluginSearchRoots ? { pluginSearchRoots: opts.pluginSearchRoots } : {}),
  });
  return selftestBackends(agent, { log: opts.log, model: opts.model, env: opts.env ?? process.env });
}

/**
 * The labels of this config's backends, made as the agent makes them (no engine is contacted): the running
 * agent's self-tests are this config's only if they name these (issue 28: `selftest -c other.toml` tested
 * the running agent's engines when the two configs shared an identity).
 */
export function configuredLabels(config: Config, plugins: AgentPlugin[], log: Logger): Promise<Set<string>> {
  return backendLabels(createAgent({ config, allowInsecure: true, logger: log, plugins }));
}
