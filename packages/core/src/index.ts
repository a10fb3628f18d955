/**
 * @usepod-agent/core: the Use Pod provider agent as a library.
 * `createAgent()` to run one, `definePlugin()` to extend one.
 */
export {
  Agent,
  type AgentEvents,
  type AgentSnapshot,
  type AgentState,
  type AgentStatus,
  type AgentTiming,
  type BackendSnapshot,
  type CreateAgentOptions,
  createAgent,
} from './agent/agent.js';
export { Backoff, type BackoffOptions } from './agent/backoff.js';
export type {
  Backend,
  BackendContext,
  BackendFactory,
  BackendLoad,
  BackendModel,
  BackendStatus,
  StreamRequest,
  UpstreamResponse,
} from './backend/backend.js';
export { KIND_PRIORITY } from './backend/backend.js';
export {
  createPool,
  engineErrorMessage,
  getJson,
  httpError,
  isConnectError,
  promGauge,
  readText,
  type SendOptions,
  send as sendRequest,
} from './backend/http.js';
export {
  contextWindowOf,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  versionAtLeast,
} from './backend/openai-compatible.js';
export {
  findConfigFile,
  type LoadConfigOptions,
  type LoadedConfig,
  loadConfig,
  readConfigFile,
  SEARCH_PLACES,
} from './config/load.js';
export { type ReadLevel, readLogLevel } from './config/log-level.js';
export {
  DEFAULT_IDENTITY_PATH,
  defaultIdentityPath,
  expandHome,
  type PlatformSpec,
  platformConfigDir,
  platformConfigFiles,
} from './config/paths.js';
export {
  type BackendConfig,
  type Config,
  type ConfigInput,
  configSchema,
  DEFAULT_COORDINATOR_URL,
  DEFAULT_PROMETHEUS_ADDR,
  LOCAL_KINDS,
  type ModelPrice,
  REMOTE_PRESET_KINDS,
} from './config/schema.js';
export {
  backendIdentity,
  isLocalKind,
  isRemotePresetKind,
  keyPath,
  type ValidateOptions,
  validateConfig,
} from './config/validate.js';
export {
  ERROR_CODES,
  type ErrorCode,
  errorMessage,
  isUsepodError,
  JOB_ERROR_CODES,
  type JobErrorCode,
  jobErrorCodeOf,
  UsepodError,
} from './errors.js';
export {
  fingerprintOf,
  generateIdentity,
  type Identity,
  loadOrCreateIdentity,
  type PersistedIdentity,
  parseIdentity,
  readIdentity,
  serializeIdentity,
  verifySignature,
  writeFileAtomic,
} from './identity/identity.js';
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
  LOG_LEVELS,
  type LogFormat,
  type Logger,
  type LogLevel,
  type LogSink,
  silentLogger,
} from './observability/log.js';
export { AgentMetrics, SESSION_STATES, type Totals } from './observability/metrics.js';
export { Redactor, redactor } from './observability/redact.js';
export { type HeartbeatStats, JobStats, percentile } from './observability/stats.js';
export { parseHostPort, StatusServer, type StatusServerOptions } from './observability/status-server.js';
export {
  type AgentHooks,
  CapabilityStage,
  type CloseInfo,
  createHooks,
  type JobContext,
  type JobHandle,
  type JobOutcome,
  type PluginHooks,
  type SessionInfo,
} from './plugins/hooks.js';
export { candidatePackages, cliPluginRoot, loadPluginForKind } from './plugins/loader.js';
export {
  type AgentPlugin,
  collectBackendFactories,
  definePlugin,
  PLUGIN_API_VERSION,
  type PluginContext,
  type PluginFactory,
  pluginFromModule,
  validatePlugin,
} from './plugins/plugin.js';
export * from './protocol/frames.js';
export { type CloseKind, classifyClose, type SessionEnd } from './protocol/session.js';
export { anthropicToChat, ChatToAnthropic } from './relay/anthropic.js';
export { type AbortReason, Executor, type JobSink, prepareRequest } from './relay/executor.js';
export { errorText, type ScanResult, StreamScanner } from './relay/stream-scan.js';
export {
  buildModelEntries,
  capabilitiesFrame,
  kindRank,
  resolvePrice,
  type ServedModel,
} from './routing/capabilities.js';
export { AGENT_VERSION } from './version.js';
