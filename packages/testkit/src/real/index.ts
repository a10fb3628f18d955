/**
 * `@usepod-agent/testkit/real`: a real llama.cpp `llama-server` for tests (Debian sid's build, set up in
 * a cache folder by the bundled script), tiny random-weight GGUF models, and a recording proxy that lets
 * `runConformance()` run against the real engine.
 */
export { type LlamaModelSpec, SLOW_MODEL, TINY_MODEL, writeLlamaGguf } from './gguf.js';
export {
  ensureLlamaServer,
  ensureModel,
  ensureSlowModel,
  ensureTinyModel,
  freePort,
  LlamaServer,
  type LlamaServerOptions,
  realEngineCache,
} from './llama-server.js';
export { RealEngineProxy } from './proxy.js';
