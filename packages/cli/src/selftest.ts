import {
  type AgentPlugin,
  type Backend,
  type Config,
  checkBackends,
  checkStatus,
  engineText,
  errorMessage,
  type Logger,
  PluginHost,
  redactor,
  SelfTest,
  type SelfTestResult,
  type SelfTestTarget,
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
  const env = opts.env ?? process.env;
  const host = new PluginHost({ config, log: opts.log });
  for (const p of plugins) await host.apply(p);
  const untested: Untested[] = [];
  const backends: Backend[] = [];
  for (const [i, entry] of checkBackends(config, host.kinds).entries()) {
    const apiKey = entry.api_key_env ? env[entry.api_key_env] : undefined;
    if (entry.api_key_env && !apiKey) {
      untested.push({
        backend: entry.name ?? `backends[${i}]`,
        kind: entry.kind,
        why: `${entry.api_key_env} is not set`,
      });
      continue;
    }
    redactor.add(apiKey);
    backends.push(host.kinds.get(entry.kind)!.create(entry, { apiKey, log: opts.log }));
  }
  try {
    const targets: SelfTestTarget[] = [];
    await Promise.all(
      backends.map(async (backend) => {
        const reported = await backend
          .probe(AbortSignal.timeout(5_000))
          .catch((err: unknown) => ({ healthy: false, models: [], detail: errorMessage(err) }));
        const { status } = checkStatus(reported);
        if (!status.healthy) {
          untested.push({
            backend: backend.label,
            kind: backend.kind,
            why: engineText(status.detail ?? 'down', 200),
          });
          return;
        }
        for (const m of status.models)
          if (!opts.model || m.id === opts.model) targets.push({ backend, model: m.id });
      }),
    );
    const c = config.selftest;
    const selftest = new SelfTest({
      targets: () => targets,
      busy: () => false,
      intervalMs: 0,
      timeoutMs: c.timeout_s * 1000,
      maxTokens: c.max_tokens,
      prompt: c.prompt,
      withdrawAfter: c.withdraw_after,
      log: opts.log,
    });
    return { results: await selftest.run(), untested };
  } finally {
    await Promise.all(backends.map((b) => b.close().catch(() => {})));
  }
}
