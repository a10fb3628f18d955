import type { Config, ConfigInput } from '../config/schema.js';
import type { PersistedIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { HeartbeatStats } from '../observability/stats.js';
import type { JobOutcome } from '../plugins/hooks.js';
import type { AgentPlugin, PluginFactory } from '../plugins/plugin.js';
import type { CapabilitiesFrame, CapabilityModel } from '../protocol/frames.js';
import type { SessionEnd } from '../protocol/session.js';

/** The agent's options, states, events and the figures it reports. */

export type AgentState = 'idle' | 'starting' | 'connecting' | 'online' | 'backoff' | 'stopping' | 'stopped';

export interface AgentTiming {
  /** Heartbeat period; PROTOCOL.md fixes it at 15 s. Tests shorten it. */
  heartbeatIntervalMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  handshakeTimeoutMs?: number;
  /** Per-tap bound for `onClose`. */
  closeHookTimeoutMs?: number;
  /** A job whose output cannot be delivered this long ends with `job_error`. */
  stallTimeoutMs?: number;
  /** Overrides `[discovery] interval_s`. */
  discoveryIntervalMs?: number;
  /** Outbound buffer above which relays pause reading their engines (default 4 MiB). */
  highWaterBytes?: number;
  /** Outbound buffer under which paused relays resume (default 1 MiB). */
  lowWaterBytes?: number;
  /** How often quiet hours are checked (default 30 s). */
  scheduleCheckMs?: number;
  /** The wall clock quiet hours are read from (default Date.now); tests move it. */
  now?: () => number;
  /** Overrides `[selftest] interval_s` (0: only on demand). */
  selftestIntervalMs?: number;
}

import type { JobJournal } from '../relay/journal.js';
import type { SelfTestResult } from '../routing/selftest.js';

export interface CreateAgentOptions {
  /** A validated config, or a plain object in the `agent.toml` shape. */
  config: Config | ConfigInput;
  /** Plugins passed directly (objects or definePlugin factories); kinds they register need no package. */
  plugins?: (AgentPlugin | PluginFactory<void>)[];
  /** Use this identity instead of the file at `identity.key_path`. */
  identity?: PersistedIdentity;
  /** Accept a ws:// coordinator URL (`--allow-insecure`). */
  allowInsecure?: boolean;
  logger?: Logger;
  /** Folders searched for plugin packages by kind. */
  pluginSearchRoots?: string[];
  timing?: AgentTiming;
  /** Environment read for `api_key_env` (default `process.env`). */
  env?: Record<string, string | undefined>;
  /**
   * The operator's ledger: every job received, served or refused, written before the coordinator hears
   * it ended (the CLI's is SQLite). Totals it already holds seed the Prometheus counters (`ledgerTotals`).
   */
  journal?: JobJournal;
}

export interface BackendSnapshot {
  label: string;
  kind: string;
  url: string | undefined;
  healthy: boolean;
  detail: string | undefined;
  inFlight: number;
  models: { id: string; contextWindow?: number; selftest?: SelfTestResult }[];
}

export interface AgentSnapshot {
  state: AgentState;
  coordinator: string;
  providerId: string | undefined;
  publicKey: string | undefined;
  agentVersion: string;
  startedAt: string | undefined;
  inFlight: number;
  /** Bytes waiting in the coordinator socket's send buffer. */
  outboundBytes: number;
  backends: BackendSnapshot[];
  models: CapabilityModel[];
  /** Paused by the owner: why, and until when (ISO time; none: until resumed). */
  paused: { reason: string; until: string | undefined } | undefined;
}

/** What `/status` and `usepod-agent status` show. */
/** A backend as `/status` and `status --json` show it: snake_case, like every field of the document. */
export interface StatusBackend {
  label: string;
  kind: string;
  url: string | null;
  healthy: boolean;
  detail: string | null;
  in_flight: number;
  models: { id: string; context_window: number | null; selftest: StatusSelfTest | null }[];
}

/** A model's last self-test (`[selftest]`), as `/status` shows it; null where none ran. */
export interface StatusSelfTest {
  ok: boolean;
  failures: number;
  /** Left out of capabilities and routing until a self-test passes again. */
  withdrawn: boolean;
  /** While ejected after real jobs failed on the engine: when it is tested again (ISO 8601). */
  ejected_until: string | null;
  /** Why those jobs failed. */
  job_error: string | null;
  ttft_ms: number | null;
  tokens_per_second: number | null;
  at: string;
  error: string | null;
}

/** What `/status` and `usepod-agent status` show: one naming style, snake_case (issue 17). */
export interface AgentStatus {
  state: AgentState;
  connected: boolean;
  coordinator: string;
  provider_id: string | null;
  public_key: string | null;
  fingerprint: string | null;
  agent_version: string;
  started_at: string | null;
  uptime_s: number;
  backends: StatusBackend[];
  models: CapabilityModel[];
  /** Paused by the owner (`usepod-agent pause`), or null. */
  paused: { reason: string; until: string | null } | null;
  jobs: { in_flight: number; served: number; failed: number; cancelled: number };
  tokens: { input: number; output: number };
  relayed_bytes: number;
  heartbeat: HeartbeatStats;
  earnings: { micro_usdc: number; usdc: number };
}

export interface AgentEvents {
  state: [AgentState];
  online: [string | undefined];
  capabilities: [CapabilitiesFrame];
  job: [JobOutcome];
  sessionEnd: [SessionEnd];
  /** The coordinator socket crossed the high-water mark (true) or drained below the low one (false). */
  backpressure: [boolean];
  /** Paused by the owner (why, until when), or resumed (undefined). */
  paused: [{ reason: string; until: Date | undefined } | undefined];
  /** A self-test result; `withdrawn` when a model was withdrawn (true) or came back (false). */
  selftest: [SelfTestResult];
  withdrawn: [SelfTestResult, boolean];
  /** A reconnect was scheduled after `waitMs`, following `preAuthFailures` failures in a row. */
  reconnect: [{ waitMs: number; preAuthFailures: number; after: SessionEnd['kind'] }];
}
