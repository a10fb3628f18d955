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
  /** A ledger for the agent's jobs (CreateAgentOptions.journal). */
  journal?: JobJournal;
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
    ...(opts.plugins ? { plugins: opts.plugins } : {}),
    logger: opts.logger ?? (opts.logLevel ? memoryLogger(lines) : silentLogger),
    timing: { ...FAST_TIMING, ...opts.timing },
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.journal ? { journal: opts.journal } : {}),
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
