import type { Backend, BackendStatus } from '../backend/backend.js';
import type { BackendConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { type Logger, silentLogger } from '../observability/log.js';
import { Discovery } from '../routing/discovery.js';
import { SelfTest, type SelfTestResult, selfTestSettings } from '../routing/selftest.js';
import { timeoutSignal } from '../timers.js';
import { checkStatus } from '../untrusted.js';
import type { Agent } from './agent.js';
import { createBackends } from './backends.js';

/**
 * The configured backends opened as `start()` opens them, with no identity, session or status server:
 * what `backends`, `doctor`, `setup` and a standalone `selftest` show. `agent.load()` comes first, so a
 * mistake reads as `validate` and `run` say it: `backends[i]`, the file, line and column.
 */

type Env = Record<string, string | undefined>;

/** One `[[backends]]` entry, probed once. */
export interface BackendProbe {
  /** Its place in `[[backends]]`. */
  index: number;
  entry: BackendConfig;
  /** The backend's label, as the running agent names it in `status` and its self-tests. */
  label: string | undefined;
  status: BackendStatus;
  latencyMs: number;
}

/** What a standalone self-test could not reach: an engine down, a key not set. */
export interface Untested {
  backend: string;
  kind: string;
  why: string;
}

/** Opens the backends, hands them to `use`, and closes them whatever happens. */
async function withBackends<T>(
  agent: Agent,
  env: Env,
  log: Logger,
  use: (backends: Backend[], skipped: Map<number, string>) => Promise<T>,
): Promise<T> {
  await agent.load();
  const skipped = new Map<number, string>();
  const backends = createBackends(agent, agent.config, env, log, (_e, i, why) => skipped.set(i, why));
  try {
    return await use(backends, skipped);
  } finally {
    await Promise.all(backends.map((b) => b.close().catch(() => {})));
  }
}

/**
 * The labels the configured backends get, made as the agent makes them (no engine is contacted): a running
 * agent's self-tests are this config's only if they name these.
 */
export function backendLabels(agent: Agent, opts: { env?: Env } = {}): Promise<Set<string>> {
  return withBackends(agent, opts.env ?? process.env, silentLogger, async (backends) => {
    return new Set(backends.map((b) => b.label));
  });
}

/** Probes every configured backend once, all at once, each bounded by `timeoutMs`. */
export function probeBackends(
  agent: Agent,
  opts: { env?: Env; timeoutMs?: number } = {},
): Promise<BackendProbe[]> {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  return withBackends(agent, opts.env ?? process.env, silentLogger, (backends, skipped) => {
    let next = 0;
    return Promise.all(
      agent.config.backends.map(async (entry, index): Promise<BackendProbe> => {
        const why = skipped.get(index);
        if (why !== undefined)
          return {
            index,
            entry,
            label: undefined,
            status: { healthy: false, models: [], detail: why },
            latencyMs: 0,
          };
        const backend = backends[next++]!;
        const started = performance.now();
        // Checked as the agent checks it (valid ids, bounded figures, folded detail): what is listed is what is served.
        // A backend may join this signal with its own (AbortSignal.any): a timer that holds it, not AbortSignal.timeout.
        const deadline = timeoutSignal(timeoutMs);
        const status = await backend
          .probe(deadline.signal)
          .then((s) => checkStatus(s).status)
          .catch((err: unknown): BackendStatus => ({ healthy: false, models: [], detail: errorMessage(err) }))
          .finally(deadline.clear);
        return {
          index,
          entry,
          label: backend.label,
          status,
          latencyMs: Math.round(performance.now() - started),
        };
      }),
    );
  });
}

/**
 * The self-test the running agent makes (routing/selftest.ts), once, through every model the configured
 * backends serve (or `model` only). What cannot be tested comes back as a reason, not as an exception.
 */
export function selftestBackends(
  agent: Agent,
  opts: { log?: Logger; model?: string | undefined; env?: Env } = {},
): Promise<{ results: SelfTestResult[]; untested: Untested[] }> {
  const log = opts.log ?? silentLogger;
  return withBackends(agent, opts.env ?? process.env, log, async (backends, skipped) => {
    const untested: Untested[] = [...skipped].map(([i, why]) => {
      const entry = agent.config.backends[i]!;
      return { backend: entry.name ?? `backends[${i}]`, kind: entry.kind, why };
    });
    const discovery = new Discovery({
      backends,
      priority: (kind) => agent.kinds.get(kind)?.priority ?? Number.MAX_SAFE_INTEGER,
      intervalMs: 0,
      probeTimeoutMs: 5_000,
      log,
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
        ...selfTestSettings(agent.config.selftest),
        log,
      });
      return { results: await selftest.run(), untested };
    } finally {
      await discovery.stop();
    }
  });
}
