import type { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { BackendConfig } from '../config/schema.js';
import type { Logger } from '../observability/log.js';

/**
 * What a backend plugin implements for one configured engine. The agent owns
 * jobs, deadlines and the coordinator; a backend owns its engine's HTTP surface.
 */

export interface BackendModel {
  /** The `model_id` advertised and matched against `job.model_id`. */
  id: string;
  /** Served context window in tokens, when the engine tells. */
  contextWindow?: number;
  /** Per-model price from the upstream (remote kinds), micro-USDC per 1M tokens, before config overrides. */
  upstreamPrice?: { input_per_1m: number; output_per_1m: number };
  /** Whether this model speaks Anthropic Messages natively at `/v1/messages`. */
  anthropicNative?: boolean;
  /**
   * Requests this model runs at once, when the engine says so per model (Ollama `num_parallel` per
   * loaded model, LM Studio `parallel` per instance); wins over the engine-wide `load.capacity`.
   */
  capacity?: number;
}

export interface BackendLoad {
  /** Requests the engine is running now. */
  running?: number;
  /** Requests queued inside the engine. */
  waiting?: number;
  /** KV-cache usage, 0..1. */
  kvCacheUsage?: number;
  /** How many requests the engine runs at once (slots, parallel, max seqs), when known. */
  capacity?: number;
}

export interface BackendStatus {
  healthy: boolean;
  /** Models servable now (loaded, or loadable on demand when the plugin is told to offer those). */
  models: BackendModel[];
  load?: BackendLoad;
  /** A short reason when unhealthy (`loading`, `connection refused`, `HTTP 503`...). */
  detail?: string;
}

export interface StreamRequest {
  /** The job's `model_id`. */
  model: string;
  /** The request body after the changes of PROTOCOL.md 5.2. */
  body: Record<string, unknown>;
  format: 'openai' | 'anthropic';
  /** Aborted on cancel, deadline, session end: the backend must close the upstream request. */
  signal: AbortSignal;
  /**
   * The same abort as an `EventEmitter` that emits `abort` with `signal` (the job's own;
   * listening on an emitter is far cheaper than on a signal on a cold process: decision 0004). `sendRequest()` takes it as `abort`; a plugin with another HTTP client uses `signal`.
   */
  abort?: EventEmitter & { readonly aborted: boolean; readonly reason: unknown };
}

export interface UpstreamResponse {
  /** The engine's 2xx response body, relayed byte for byte. */
  body: Readable;
  /** Response content type, checked to be an event stream (or NDJSON). */
  contentType: string;
}

export interface Backend {
  readonly kind: string;
  /** Stable label for logs, metrics and `status`: `name` from config or `kind@host`. */
  readonly label: string;
  readonly url: string | undefined;
  /** Health, servable models, and engine load. Must not throw for an unreachable engine: report it. */
  probe(signal?: AbortSignal): Promise<BackendStatus>;
  /**
   * Starts the streaming request. Resolves once a 2xx status and headers arrived;
   * rejects with a `UsepodError` whose code maps to a 5.4 error code otherwise.
   */
  stream(req: StreamRequest): Promise<UpstreamResponse>;
  /** Releases sockets and timers. Idempotent. */
  close(): Promise<void>;
}

export interface BackendContext {
  /** The API key read from `api_key_env`, when the entry has one. */
  apiKey: string | undefined;
  log: Logger;
}

export type BackendFactory = (entry: BackendConfig, ctx: BackendContext) => Backend;
