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
} from './agent.js';
export { anthropicToChat, ChatToAnthropic } from './anthropic.js';
export type {
  Backend,
  BackendContext,
  BackendFactory,
  BackendLoad,
  BackendModel,
  BackendStatus,
  StreamRequest,
  UpstreamResponse,
} from './backend.js';
export { KIND_PRIORITY } from './backend.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export {
  buildModelEntries,
  capabilitiesFrame,
  kindRank,
  resolvePrice,
  type ServedModel,
} from './capabilities.js';
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
  type JobEndMessage,
  type JobFirstChunkMessage,
  type JobReceivedMessage,
  type JobRequestMessage,
  type JobResponseMessage,
  jobChannels,
} from './diagnostics.js';
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
export { type AbortReason, Executor, type JobSink, prepareRequest } from './executor.js';
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
} from './hooks.js';
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
} from './http.js';
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
} from './identity.js';
export {
  configureLogging,
  createLogger,
  LOG_LEVELS,
  type LogFormat,
  type Logger,
  type LogLevel,
  type LogSink,
  silentLogger,
} from './log.js';
export { AgentMetrics, SESSION_STATES, type Totals } from './metrics.js';
export {
  contextWindowOf,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  versionAtLeast,
} from './openai-compatible.js';
export {
  DEFAULT_IDENTITY_PATH,
  defaultIdentityPath,
  expandHome,
  type PlatformSpec,
  platformConfigDir,
  platformConfigFiles,
} from './paths.js';
export {
  type AgentPlugin,
  collectBackendFactories,
  definePlugin,
  PLUGIN_API_VERSION,
  type PluginContext,
  type PluginFactory,
  pluginFromModule,
  validatePlugin,
} from './plugin.js';
export { candidatePackages, cliPluginRoot, loadPluginForKind } from './plugin-loader.js';
export * from './protocol/frames.js';
export { Redactor, redactor } from './redact.js';
export { type CloseKind, classifyClose, type SessionEnd } from './session.js';
export { type HeartbeatStats, JobStats, percentile } from './stats.js';
export { parseHostPort, StatusServer, type StatusServerOptions } from './status-server.js';
export { errorText, type ScanResult, StreamScanner } from './stream-scan.js';
export { AGENT_VERSION } from './version.js';
