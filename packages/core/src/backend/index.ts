/**
 * `@usepod-agent/core/backend`, the kit for backend plugin authors (semver-bound): the backend contract,
 * the OpenAI-compatible base most engines extend, HTTP helpers that map engine answers onto the job error
 * codes, and the stream scanning a plugin may need. `surface.test.ts` pins these names.
 */

export type { BackendConfig } from '../config/schema.js';
export { UsepodError } from '../errors.js';
export type { Logger } from '../observability/log.js';
export type { BackendKind, OptionsSchema } from '../plugins/kinds.js';
export { errorText, type ScanResult, StreamScanner } from '../relay/stream-scan.js';
// The agent's own bound on what a probe reports, so the conformance suite holds plugins to it.
export { checkStatus } from '../untrusted.js';
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
export {
  createPool,
  type EnginePool,
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
  contextWindowOf,
  errorIn200,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  versionAtLeast,
} from './openai-compatible.js';
export { backendKindOf, checkPlugin } from './plugin-check.js';
