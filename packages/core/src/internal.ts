/**
 * `@usepod-agent/core/internal`: what this repository's CLI, testkit and benchmark use beyond the public
 * surfaces. Not covered by semver: it may change in any release. Plugins and integrators use "." and
 * "./backend" only.
 */

export { createBackends } from './agent/backends.js';
export { Backoff, type BackoffOptions } from './agent/backoff.js';
export { checkTimezone, parseWindow, type QuietWindow, quietWindowAt } from './agent/schedule.js';
export { statusSelfTest } from './agent/status.js';
export * from './backend/index.js';
export {
  findConfigFile,
  readConfigFile,
  SEARCH_PLACES,
} from './config/load.js';
export { at, locateTomlKey } from './config/locate.js';
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
  configSchema,
  DEFAULT_COORDINATOR_URL,
  DEFAULT_PROMETHEUS_ADDR,
  type ModelPrice,
} from './config/schema.js';
export { backendIdentity, keyPath, type ValidateOptions, validateConfig } from './config/validate.js';
export { errorMessage, JOB_ERROR_CODES, jobErrorCodeOf } from './errors.js';
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
export * from './index.js';
export { debugRequested, LOG_LEVELS, type LogSink } from './observability/log.js';
export { AgentMetrics, SESSION_STATES, type SeedGroup, type Totals } from './observability/metrics.js';
export { Redactor, redactor } from './observability/redact.js';
export { type HeartbeatStats, JobStats, percentile } from './observability/stats.js';
export { parseHostPort, StatusServer, type StatusServerOptions } from './observability/status-server.js';
export { createHooks } from './plugins/hooks.js';
export { PluginHost } from './plugins/host.js';
export { checkBackends, type RegisteredKind, registeredKind } from './plugins/kinds.js';
export { candidatePackages, cliPluginRoot, loadPluginForKind } from './plugins/loader.js';
export { checkContract, PLUGIN_API_VERSION, pluginFromModule, validatePlugin } from './plugins/plugin.js';
export * from './protocol/frames.js';
export { type CloseKind, classifyClose, type SessionEnd } from './protocol/session.js';
export { anthropicToChat, ChatToAnthropic } from './relay/anthropic.js';
export { type AbortReason, Executor, type JobSink, prepareRequest } from './relay/executor.js';
export {
  buildModelEntries,
  capabilitiesFrame,
  type KindPriority,
  resolvePrice,
  type ServedModel,
  samePriority,
} from './routing/capabilities.js';
export { Discovery } from './routing/discovery.js';
export { SelfTest, type SelfTestOptions, type SelfTestTarget, selfTestSettings } from './routing/selftest.js';
export { checkStatus, engineText } from './untrusted.js';
