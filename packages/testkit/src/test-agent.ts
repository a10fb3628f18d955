import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Agent,
  type AgentPlugin,
  type AgentTiming,
  type ConfigInput,
  createAgent,
  type JobJournal,
  type Logger,
  type LogLevel,
  type PluginFactory,
  silentLogger,
} from '@usepod-agent/core';
import { TestCoordinator } from './coordinator.js';

/**
 * An in-process agent wired to a local coordinator, with a throwaway identity
 * and fast timings. Its calls return results and errors as values, so a test
 * can assert on a failure without try/catch.
 */

export type Result<T> = { ok: true; value: T } | { ok: false; error: Error & { code?: string } };

async function settle<T>(p: Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

export interface TestAgentOptions {
  /** Config overrides; coordinator.url and identity.key_path are filled in. */
  config?: ConfigInput;
  plugins?: (AgentPlugin | PluginFactory<void>)[];
  /** Reuse a running coordinator (one is started otherwise). */
  coordinator?: TestCoordinator;
  timing?: AgentTiming;
  logger?: Logger;
  /** Collect log lines at this level into `lines` (default: none). */
  logLevel?: LogLevel;
  env?: Record<string, string | undefined>;
  /** A journal for the agent's jobs, provided through a plugin as a ledger would (`ctx.provideJournal`). */
  journal?: JobJournal;
  /**
   * Apply the installed plugins that are on by default (the ledger, the control socket) as `run` does.
   * Default false: a test agent is the core alone plus what the test passes.
   */
  defaultPlugins?: boolean;
}

export interface TestAgent {
  agent: Agent;
  coordinator: TestCoordinator;
  /** Folder holding the identity file; removed by `close()`. */
  dir: string;
  identityPath: string;
  lines: string[];
  start(): Promise<Result<void>>;
  stop(opts?: { graceMs?: number }): Promise<Result<void>>;
  close(): Promise<void>;
}

/** Timings that keep tests fast; heartbeats stay off unless a test asks. */
export const FAST_TIMING: AgentTiming = {
  heartbeatIntervalMs: 3_600_000,
  backoffInitialMs: 50,
  backoffMaxMs: 400,
  handshakeTimeoutMs: 3_000,
  closeHookTimeoutMs: 1_000,
};

function memoryLogger(lines: string[], area = 'agent'): Logger {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(`${level} ${area} ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}`);
  };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (sub) => memoryLogger(lines, `${area}:${sub}`),
  };
}

/**
 * A plugin that hands its test the holds a feature plugin would place (`ctx.hold`): a test stands in for
 * GPU yielding, a heat guard or any cause of a pause with `hold('gpu', 'a game')` and `release('gpu')`.
 */
export function holdsPlugin(): {
  plugin: AgentPlugin;
  hold(name: string, reason: string, until?: Date): void;
  release(name: string): void;
} {
  let ctx: Parameters<AgentPlugin['apply']>[1] | undefined;
  const need = () => {
    if (!ctx) throw new Error('holdsPlugin: the plugin was not applied to an agent');
    return ctx;
  };
  return {
    plugin: {
      name: 'testkit:holds',
      apiVersion: 1,
      apply: (_hooks, c) => {
        ctx = c;
      },
    },
    hold: (name, reason, until) => need().hold(name, { reason, ...(until ? { until } : {}) }),
    release: (name) => need().release(name),
  };
}

/** A plugin providing a given journal: how a test stands in for a ledger. */
function journalPlugin(journal: JobJournal): AgentPlugin {
  return {
    name: 'testkit:journal',
    apiVersion: 1,
    apply: (_hooks, ctx) => {
      ctx.provideJournal(journal);
    },
  };
}

export async function createTestAgent(opts: TestAgentOptions = {}): Promise<TestAgent> {
  const coordinator = opts.coordinator ?? (await TestCoordinator.start());
  const ownsCoordinator = !opts.coordinator;
  const dir = await mkdtemp(join(tmpdir(), 'usepod-test-'));
  const identityPath = join(dir, 'identity.key');
  const lines: string[] = [];
  const cfg = opts.config ?? {};
  const agent = createAgent({
    config: {
      ...cfg,
      coordinator: { url: coordinator.url, ...cfg.coordinator },
      identity: { key_path: identityPath, ...cfg.identity },
      observability: { prometheus_addr: 'off', ...cfg.observability },
    },
    allowInsecure: true,
    plugins: [...(opts.plugins ?? []), ...(opts.journal ? [journalPlugin(opts.journal)] : [])],
    defaultPlugins: opts.defaultPlugins ?? false,
    logger: opts.logger ?? (opts.logLevel ? memoryLogger(lines) : silentLogger),
    timing: { ...FAST_TIMING, ...opts.timing },
    ...(opts.env ? { env: opts.env } : {}),
  });
  let closed = false;
  return {
    agent,
    coordinator,
    dir,
    identityPath,
    lines,
    start: () => settle(agent.start()),
    stop: (o) => settle(agent.stop({ graceMs: 0, ...o })),
    async close() {
      if (closed) return;
      closed = true;
      await agent.stop({ graceMs: 0 }).catch(() => {});
      if (ownsCoordinator) await coordinator.close();
      // The agent may still be saving its identity (a temp file appears, then goes): retry, do not fail.
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    },
  };
}
