import type { Config, ConfigInput } from '../config/schema.js';
import type { PersistedIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { HeartbeatStats } from '../observability/stats.js';
import type { AgentState } from '../plugins/hooks.js';
import type { AgentPlugin, Hold, PluginFactory } from '../plugins/plugin.js';
import type { CapabilityModel } from '../protocol/frames.js';

/** The agent's options and the figures it reports. */

export interface AgentTiming {
  /** Heartbeat period; PROTOCOL.md fixes it at 15 s. Tests shorten it. */
  heartbeatIntervalMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  handshakeTimeoutMs?: number;
  /** Per-tap bound for `onClose`. */
  closeHookTimeoutMs?: number;
  /** Per-tap bound for `onStart` (default 60 s): past it the agent serves on, the tap runs on by itself. */
  startHookTimeoutMs?: number;
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
  /** First delay before a provider id that could not be saved is written again (default 1 s, doubling). */
  providerIdRetryMs?: number;
  /** How long `doctor` waits for each plugin's check (default 30 s). */
  doctorCheckMs?: number;
  /** How long a plugin may take to import, and then to apply (default 30 s each). */
  pluginLoadMs?: number;
}

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
   * Apply the installed plugins that declare themselves on by default (`"usepod-agent": { "default": true }`
   * in their package.json: the ledger, the control socket), as `usepod-agent run` does. Default true.
   */
  defaultPlugins?: boolean;
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
  /** Why the agent is paused (the owner's hold first), or undefined. */
  paused: Hold | undefined;
  /** Every hold keeping it paused. */
  holds: Hold[];
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
  /** Why: the last real job's failure on the engine, or its retest's once one failed. */
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
  /** Why the agent is paused: the owner's hold first, else the oldest; null while serving. */
  paused: { by: string; reason: string; until: string | null } | null;
  /** Every hold (owner, schedule, gpu, heat, a plugin's); one with `backends` withdraws only theirs. */
  holds: { by: string; reason: string; until: string | null; since: string; backends?: string[] }[];
  /** `missed`: refused though the agent could have served them (paused, at capacity...); `failed`: the rest. */
  jobs: { in_flight: number; served: number; missed: number; failed: number; cancelled: number };
  tokens: { input: number; output: number };
  relayed_bytes: number;
  heartbeat: HeartbeatStats;
  earnings: { micro_usdc: number; usdc: number };
  /** Each plugin's status section (`ctx.statusSection`), by name. */
  sections: Record<string, unknown>;
}
