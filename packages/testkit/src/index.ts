/**
 * @usepod-agent/testkit: a local coordinator, engine emulators, an in-process
 * test agent and the plugin conformance suite, for this repository's tests and
 * for third-party plugin authors.
 */

export {
  type ConformanceEmulator,
  type ConformanceOptions,
  runConformance,
  type TestRunner,
} from './conformance.js';
export {
  type AuthDecision,
  type CoordinatorOptions,
  CoordinatorSession,
  type JobRequest,
  JobRun,
  type RecordedFrame,
  TestCoordinator,
} from './coordinator.js';
export { startDemoEngine } from './demo-engine.js';
export {
  type Behavior,
  type ControlledStream,
  delay,
  type EmulatedModel,
  type EmulatorOptions,
  EngineEmulator,
  json,
  promptTokensOf,
  type RequestRecord,
  type Route,
  type StreamContext,
  text,
  tokenText,
  writeAndDrain,
} from './emulators/base.js';
export { LlamacppEmulator, type LlamacppOptions } from './emulators/llamacpp.js';
export { LmstudioEmulator, type LmstudioOptions } from './emulators/lmstudio.js';
export { OllamaEmulator, type OllamaOptions } from './emulators/ollama.js';
export { OpenAIEmulator, type OpenAIEmulatorOptions } from './emulators/openai.js';
export { type ChatFlavor, writeAnthropicStream, writeChatStream } from './emulators/streams.js';
export { VllmEmulator, type VllmOptions } from './emulators/vllm.js';
export { type ModelConfigEntry, type PairingOptions, PairingServer } from './pairing.js';
export {
  createTestAgent,
  FAST_TIMING,
  holdsPlugin,
  type Result,
  type TestAgent,
  type TestAgentOptions,
} from './test-agent.js';
export { EventLog, withTimeout } from './wait.js';
export { type ReceivedPost, type ScriptedReply, WebhookReceiver } from './webhook-receiver.js';
