/**
 * `@usepod-agent/core/cli`: what only a command-line front end needs beyond "." and "./backend": finding
 * and reading the config file, the log level from the environment, the redactor for its own output, the
 * identity file (`identity`, `setup`, `service install`), the platform's paths, and the configured
 * backends probed or self-tested without a session (`backends`, `doctor`, `setup`, `selftest`).
 * Pinned by `surface.test.ts` like the others; plugins and integrators need none of it.
 */
export {
  type BackendProbe,
  backendLabels,
  probeBackends,
  selftestBackends,
  type Untested,
} from './agent/standalone.js';
export { statusSelfTest } from './agent/status.js';
export { findConfigFile, MAX_CONFIG_BYTES, readConfigFile } from './config/load.js';
export { type ReadLevel, readLogLevel } from './config/log-level.js';
export { DEFAULT_IDENTITY_PATH, expandHome, platformConfigDir } from './config/paths.js';
export { DEFAULT_PROMETHEUS_ADDR } from './config/schema.js';
export { backendIdentity, validateConfig } from './config/validate.js';
export {
  loadOrCreateIdentity,
  type PersistedIdentity,
  readIdentity,
  writeFileAtomic,
} from './identity/identity.js';
export { replaceFileSync } from './local-file.js';
export { debugRequested } from './observability/log.js';
export { redactor } from './observability/redact.js';
export { readStatusToken, statusTokenPath } from './observability/status-token.js';
export type { RegisteredKind } from './plugins/kinds.js';
export { importPlugin } from './plugins/loader.js';
export {
  checkIssueAnswer,
  checkPollAnswer,
  type IssueAnswer,
  type ModelConfig,
  type PollAnswer,
} from './protocol/pairing.js';
