import { Readable } from 'node:stream';
import type { BackendConfig } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { timeoutSignal } from '../timers.js';
import type {
  Backend,
  BackendContext,
  BackendLoad,
  BackendModel,
  BackendStatus,
  StreamRequest,
  UpstreamResponse,
} from './backend.js';
import {
  createPool,
  type EnginePool,
  engineErrorMessage,
  getJson,
  httpError,
  readText,
  send,
} from './http.js';

/**
 * The shared helper every OpenAI-compatible engine plugin builds on: health
 * probe, `/v1/models` with the context-window fields of ENGINES.md, the
 * streaming POST with an AbortSignal, and error mapping. A plugin subclasses it
 * and overrides only what its engine does differently.
 */

export interface OpenAICompatibleOptions {
  kind: string;
  /** Base URL without the `/v1` suffix, e.g. `http://127.0.0.1:8000`. */
  url: string;
  label?: string;
  apiKey?: string;
  /** Allow-list from config: only these models are offered. */
  models?: string[];
  log: Logger;
  /** Extra request headers (remote presets). */
  headers?: Record<string, string>;
  /** Path prefix of the OpenAI routes; `/v1` for local engines, `` when `url` already ends in it. */
  apiPrefix?: string;
  /** How long a probe may take before the engine counts as down. */
  probeTimeoutMs?: number;
}

/** Options for a factory taking a config entry. */
export function optionsFromEntry(
  kind: string,
  entry: BackendConfig,
  ctx: BackendContext,
  defaultUrl?: string,
) {
  const url = entry.url ?? defaultUrl;
  if (!url)
    throw new UsepodError('USEPOD_CONFIG_INVALID', `backend of kind "${kind}" needs a url`, { user: true });
  return {
    kind,
    url,
    label: entry.name,
    apiKey: ctx.apiKey,
    models: entry.models,
    log: ctx.log,
  } satisfies OpenAICompatibleOptions;
}

/** Reads the context window from a `/v1/models` entry of any engine (never a training maximum). */
export function contextWindowOf(card: Record<string, unknown>): number | undefined {
  const meta = card.meta as Record<string, unknown> | null | undefined;
  const candidates = [
    card.max_model_len,
    meta?.n_ctx,
    card.context_length,
    card.context_window,
    card.max_context_length,
  ];
  for (const c of candidates) {
    if (typeof c === 'number' && Number.isInteger(c) && c > 0) return c;
  }
  return undefined;
}

/** `0.12.1` >= `0.12.0`; non-numeric parts (pre-release tags) are ignored. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version
    .replace(/^v/, '')
    .split(/[.+-]/)
    .map((x) => Number.parseInt(x, 10));
  const b = min.split('.').map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < b.length; i++) {
    const x = Number.isFinite(a[i]) ? a[i]! : 0;
    if (x !== b[i]) return x > b[i]!;
  }
  return true;
}

/**
 * The error a 200 JSON answer carries, if any. LM Studio's "Unexpected endpoint or method" is a route it
 * does not have: reported as a 404, so an Anthropic job falls back to translation as on any engine.
 */
export function errorIn200(text: string): UsepodError | undefined {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!obj || typeof obj !== 'object' || (obj as { error?: unknown }).error == null) return undefined;
  const message = engineErrorMessage(text);
  if (/unexpected endpoint or method/i.test(message)) return httpError(404, text);
  const mapped = httpError(400, text);
  if (mapped.code === 'USEPOD_BACKEND_MODEL_NOT_FOUND') return mapped;
  return new UsepodError('USEPOD_BACKEND_HTTP', `backend answered 200 with an error: ${message}`);
}

export class OpenAICompatibleBackend implements Backend {
  readonly kind: string;
  readonly label: string;
  readonly url: string;
  protected readonly pool: EnginePool;
  protected readonly log: Logger;
  protected readonly apiKey: string | undefined;
  protected readonly allow: Set<string> | undefined;
  protected readonly extraHeaders: Record<string, string>;
  protected readonly apiPrefix: string;
  protected readonly probeTimeoutMs: number;
  /** Set by a plugin once it knows its engine serves Anthropic `/v1/messages` (by version). */
  protected anthropicNative = false;
  #closed = false;

  constructor(opts: OpenAICompatibleOptions) {
    this.kind = opts.kind;
    this.url = opts.url.replace(/\/+$/, '');
    this.label = opts.label ?? `${opts.kind}@${new URL(this.url).host}`;
    this.apiKey = opts.apiKey;
    this.allow = opts.models?.length ? new Set(opts.models) : undefined;
    this.log = opts.log;
    this.extraHeaders = opts.headers ?? {};
    this.apiPrefix = opts.apiPrefix ?? '/v1';
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 5_000;
    this.pool = createPool();
  }

  /** Absolute URL of a path on the engine. */
  protected endpoint(path: string): string {
    return `${this.url}${path}`;
  }

  protected headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', ...this.extraHeaders, ...extra };
    if (this.apiKey) h.authorization = `Bearer ${this.apiKey}`;
    return h;
  }

  protected getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
    return getJson<T>(this.pool, this.endpoint(path), this.headers(), signal);
  }

  /** Throws when the engine is not ready. The default relies on the model listing alone. */
  protected async checkHealth(_signal: AbortSignal): Promise<void> {}

  /** The engine's servable models. Default: `GET /v1/models`. */
  protected async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const list = await this.getJson<{ data?: unknown }>(`${this.apiPrefix}/models`, signal);
    if (!Array.isArray(list?.data)) {
      throw new UsepodError('USEPOD_BACKEND_HTTP', `${this.apiPrefix}/models did not return a "data" list`);
    }
    const out: BackendModel[] = [];
    for (const card of list.data as Record<string, unknown>[]) {
      if (!card || typeof card.id !== 'string') continue;
      const contextWindow = contextWindowOf(card);
      out.push(contextWindow ? { id: card.id, contextWindow } : { id: card.id });
    }
    return out;
  }

  /** Engine load signals, where the engine has them. */
  protected async readLoad(_signal: AbortSignal): Promise<BackendLoad | undefined> {
    return undefined;
  }

  async probe(signal?: AbortSignal): Promise<BackendStatus> {
    // Aborted when the probe ends: a request it left waiting (one of two asked at once, whose sibling
    // failed) would otherwise hold its connection for as long as the engine does not answer, every probe.
    const ended = new AbortController();
    const deadline = timeoutSignal(this.probeTimeoutMs, signal, ended.signal);
    const s = deadline.signal;
    try {
      await this.checkHealth(s);
      const models = (await this.listModels(s))
        .filter((m) => !this.allow || this.allow.has(m.id))
        .map((m) =>
          this.anthropicNative && m.anthropicNative === undefined ? { ...m, anthropicNative: true } : m,
        );
      const load = await this.readLoad(s).catch((err: unknown) => {
        this.log.debug('load probe failed', { backend: this.label, error: (err as Error).message });
        return undefined;
      });
      return load ? { healthy: true, models, load } : { healthy: true, models };
    } catch (err) {
      const detail = deadline.timedOut
        ? `no answer within ${this.probeTimeoutMs} ms`
        : (err as Error).message;
      return { healthy: false, models: [], detail };
    } finally {
      ended.abort();
      deadline.clear();
    }
  }

  /** The route a job goes to, by format. */
  protected streamPath(format: StreamRequest['format']): string {
    return format === 'anthropic' ? `${this.apiPrefix}/messages` : `${this.apiPrefix}/chat/completions`;
  }

  /**
   * The URL and headers of a job's request, per format, made on the first job and kept: they depend on
   * configuration only, and building them cost each job tens of µs on an agent woken from idle
   * (decision 0004). A subclass overriding `endpoint`, `streamPath` or `headers` sees them read once.
   */
  #streamTargets: Partial<Record<StreamRequest['format'], { url: string; headers: Record<string, string> }>> =
    {};

  #streamTarget(format: StreamRequest['format']): { url: string; headers: Record<string, string> } {
    let target = this.#streamTargets[format];
    if (!target) {
      const headers = this.headers({ 'content-type': 'application/json', accept: 'text/event-stream' });
      if (format === 'anthropic' && this.apiKey) headers['x-api-key'] = this.apiKey;
      target = { url: this.endpoint(this.streamPath(format)), headers };
      this.#streamTargets[format] = target;
    }
    return target;
  }

  async stream(req: StreamRequest): Promise<UpstreamResponse> {
    const { url, headers } = this.#streamTarget(req.format);
    const res = await send(this.pool, url, {
      method: 'POST',
      headers,
      body: JSON.stringify(req.body),
      signal: req.signal,
      ...(req.abort ? { abort: req.abort } : {}),
    });
    if (res.status < 200 || res.status > 299) {
      const text = await readText(res.body).catch(() => '');
      throw httpError(res.status, text);
    }
    const ct = res.headers['content-type'];
    const contentType = Array.isArray(ct) ? (ct[0] ?? '') : (ct ?? '');
    if (!/json/i.test(contentType)) return { body: res.body, contentType };
    // A 200 carrying `error` is an error (LM Studio answers unknown routes and some failures so).
    const text = await readText(res.body).catch(() => '');
    const carried = errorIn200(text);
    if (carried) throw carried;
    // Not an error: the executor reports the answer as not being a stream.
    return { body: Readable.from([Buffer.from(text)]), contentType };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.destroy();
  }
}
