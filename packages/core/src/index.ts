/**
 * `@usepod-agent/core`, the public surface (semver-bound): `createAgent()` to run an agent,
 * `definePlugin()` to extend one, the hooks, the errors, and the types they speak. Backend authors add
 * `@usepod-agent/core/backend`; a command-line front end adds `@usepod-agent/core/cli`. Nothing else is
 * exported. `surface.test.ts` pins these names.
 */
export {
  Agent,
  type AgentEvents,
  type AgentIdentity,
  type AgentSnapshot,
  type AgentStatus,
  type AgentTiming,
  type BackendSnapshot,
  type CreateAgentOptions,
  createAgent,
  type StatusBackend,
  type StatusSelfTest,
} from './agent/agent.js';
/** Weekly windows in a time zone, `[schedule]`'s grammar, for features with windows of their own (tariffs, updates). */
export {
  checkTimezone,
  parseWindow,
  type QuietWindow as WeeklyWindow,
  quietWindowAt as windowAt,
} from './agent/schedule.js';
export type { Backend, BackendModel } from './backend/backend.js';
export { childEnv } from './child-env.js';
export { type LoadConfigOptions, type LoadedConfig, loadConfig } from './config/load.js';
export type { BackendConfig, Config, ConfigInput } from './config/schema.js';
export {
  ERROR_CODES,
  type ErrorCode,
  errorMessage,
  isUsepodError,
  type JobErrorCode,
  UsepodError,
} from './errors.js';
export {
  type LocalText,
  type LocalTextOptions,
  readLocalText,
  readLocalTextSync,
  replaceFile,
} from './local-file.js';
export {
  type JobEndMessage,
  type JobFirstChunkMessage,
  type JobReceivedMessage,
  type JobRequestMessage,
  type JobResponseMessage,
  jobChannels,
} from './observability/diagnostics.js';
export {
  configureLogging,
  createLogger,
  type LogFormat,
  type Logger,
  type LogLevel,
  silentLogger,
} from './observability/log.js';
export type { SeedGroup } from './observability/metrics.js';
export type {
  Labels,
  PluginCounter,
  PluginGauge,
  PluginMetrics,
} from './observability/plugin-metrics.js';
export type { StatusRequest, StatusRouteAuth, StatusRouteHandler } from './observability/status-server.js';
export { STATUS_PROOF_PATH } from './observability/status-server.js';
export {
  readTokenFile,
  STATUS_PROOF_CONTEXT,
  statusProof,
  type TokenFileRead,
} from './observability/status-token.js';
export {
  type AgentEvent,
  type AgentHooks,
  type AgentState,
  CapabilityStage,
  type CloseInfo,
  type EventOf,
  type JobContext,
  type JobHandle,
  type JobOutcome,
  type PausedBy,
  type PluginHooks,
  type SessionInfo,
  type StartInfo,
} from './plugins/hooks.js';
export type { BackendKind, OptionsSchema } from './plugins/kinds.js';
export { MAX_PACKAGE_JSON } from './plugins/loader.js';
export {
  type AgentAccess,
  type AgentBackend,
  type AgentPlugin,
  type DoctorFacts,
  type DoctorFinding,
  definePlugin,
  type Hold,
  type HoldOptions,
  type JobInFlight,
  type PluginContext,
  type PluginFactory,
} from './plugins/plugin.js';
export { killGroup } from './process-group.js';
export type { CapabilitiesFrame, CapabilityModel, JobFrame } from './protocol/frames.js';
export type { JobJournal, JobRecord, Refusal } from './relay/journal.js';
export type { SelfTestResult } from './routing/selftest.js';
export { type LongTimer, longTimeout, type TimeoutSignal, timeoutSignal } from './timers.js';
/** Text from outside (an engine, the coordinator, a GPU tool) bounded and folded before a log, a terminal or a chat. */
export { engineText, readBoundedText } from './untrusted.js';
export { AGENT_VERSION } from './version.js';
