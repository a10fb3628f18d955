import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import type { Dispatcher, Agent as UndiciAgent } from 'undici';
import { UsepodError } from '../errors.js';
import { guardBody } from '../relay/read-chunks.js';
import { errorText } from '../relay/stream-scan.js';
import type { StreamRequest } from './backend.js';

/**
 * HTTP to engines through undici: one keep-alive pool per backend, streamed
 * bodies as Node Readables (pausable, for backpressure), and errors mapped to
 * the codes of PROTOCOL.md 5.4. See docs/decisions/0002-undici-for-engine-http.md.
 */

const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/**
 * undici reads sockets with a 64 KiB buffer by default; a paused relay's read-ahead is that plus the
 * body's highWaterMark, so both are kept at 16 KiB (bench lane E: 100 KB instead of 200 KB held per
 * paused stream). net.connect takes `highWaterMark`; undici passes it through but does not type it.
 */
const CONNECT_OPTIONS = { timeout: 10_000, highWaterMark: 16 * 1024 };

/**
 * undici's index loads all of undici (fetch, its cache, mocks, WebSocket, EventSource: 110 modules, held
 * for the agent's life); the agent needs its Agent and `request()`, 31 (decision 0008's fourth pass). Its
 * files are required by path (undici 7 has no `exports` map; the version is pinned), and the request API
 * goes onto Dispatcher's prototype as undici's index puts it there, so a plugin's `createPool()` offers all
 * of it. startup.test.ts holds `run` to not loading the index.
 */
const requireUndici = createRequire(import.meta.url);
const Agent: typeof UndiciAgent = requireUndici('undici/lib/dispatcher/agent.js');
Object.assign(
  (requireUndici('undici/lib/dispatcher/dispatcher.js') as typeof Dispatcher).prototype,
  requireUndici('undici/lib/api/index.js'),
);

export function createPool(): UndiciAgent {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 512,
    // Deadlines are the job's own (deadline_ms); undici must not cut streams on its own clock.
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: CONNECT_OPTIONS,
  });
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & Dispatcher.ResponseData['body'];
}

function errCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_ERRORS.has(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when a request failed because the connection could not be made or was dropped. */
export function isConnectError(err: unknown): boolean {
  return errCode(err) !== undefined;
}

export interface SendOptions {
  method: 'GET' | 'POST' | 'HEAD';
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** The job's abort as an emitter fired with `signal` (`StreamRequest.abort`): handed to undici instead. */
  abort?: StreamRequest['abort'];
}

/**
 * `origin` and `path` of an engine URL, parsed once: undici's top-level `request(url)` runs the WHATWG
 * URL parser on every call, a cost a cold agent pays on each job's way to its engine (decision 0004).
 */
const parsedUrls = new Map<string, { origin: string; path: string }>();
function splitUrl(url: string): { origin: string; path: string } {
  let hit = parsedUrls.get(url);
  if (!hit) {
    const u = new URL(url);
    hit = { origin: u.origin, path: `${u.pathname}${u.search}` };
    // Engines have a handful of endpoints each; the bound only guards against a plugin that varies them.
    if (parsedUrls.size >= 256) parsedUrls.clear();
    parsedUrls.set(url, hit);
  }
  return hit;
}

/** Sends a request; connection failures become `USEPOD_BACKEND_UNREACHABLE`. */
export async function send(pool: Dispatcher, url: string, opts: SendOptions): Promise<HttpResult> {
  try {
    const res = await pool.request({
      ...splitUrl(url),
      method: opts.method,
      headers: opts.headers,
      body: opts.body,
      signal: opts.abort ?? opts.signal,
      // With CONNECT_OPTIONS, bounds what a paused relay holds per stream.
      highWaterMark: 16 * 1024,
    });
    return { status: res.statusCode, headers: res.headers, body: guardBody(res.body as HttpResult['body']) };
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    const code = errCode(err);
    if (code) {
      throw new UsepodError('USEPOD_BACKEND_UNREACHABLE', `cannot reach ${new URL(url).origin}: ${code}`, {
        cause: err,
      });
    }
    throw new UsepodError(
      'USEPOD_BACKEND_HTTP',
      `request to ${new URL(url).origin} failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** Reads at most `limit` bytes of a body as text, then drops the rest. */
export async function readText(body: Readable, limit = 64 * 1024): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (size < limit) parts.push(b.subarray(0, limit - size));
    size += b.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(parts).toString('utf8');
}

/** GET a JSON document; non-2xx statuses become mapped errors. */
export async function getJson<T = unknown>(
  pool: Dispatcher,
  url: string,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<T> {
  const res = await send(pool, url, { method: 'GET', headers, signal });
  const text = await readText(res.body, 8 * 1024 * 1024);
  if (res.status < 200 || res.status > 299) throw httpError(res.status, text);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new UsepodError(
      'USEPOD_BACKEND_HTTP',
      `${new URL(url).pathname} answered ${res.status} with a body that is not JSON`,
    );
  }
}

/** The message inside an engine's error body: nested, flat or string shapes. */
export function engineErrorMessage(body: string): string {
  try {
    const obj = JSON.parse(body) as Record<string, unknown>;
    if (obj && typeof obj === 'object') {
      if (obj.error !== undefined) return errorText(obj.error);
      if (typeof obj.message === 'string') return obj.message;
      if (typeof obj.detail === 'string') return obj.detail;
    }
  } catch {
    // not JSON: the text itself
  }
  return body.trim().slice(0, 500);
}

function engineErrorCode(body: string): string | undefined {
  try {
    const obj = JSON.parse(body) as { error?: { code?: unknown; type?: unknown } };
    const e = obj?.error;
    if (e && typeof e === 'object') {
      if (typeof e.code === 'string') return e.code;
      if (typeof e.type === 'string') return e.type;
    }
  } catch {
    // not JSON
  }
  return undefined;
}

const MODEL_NOT_FOUND =
  /(model .*(not found|does not exist|not loaded)|no models loaded|invalid model identifier|model_not_found|model_not_loaded|try pulling it first)/i;

/**
 * Maps an engine's error status and body onto the agent's codes (and so onto
 * PROTOCOL.md 5.4): 401/403 -> auth, "model not found" in any engine's words ->
 * model_not_loaded, anything else -> internal with the status and body.
 */
export function httpError(status: number, body: string): UsepodError {
  const message = engineErrorMessage(body);
  // 402: the upstream account has no credit (OpenRouter); the operator must act, like a bad key.
  if (status === 401 || status === 403 || status === 402) {
    return new UsepodError('USEPOD_BACKEND_AUTH', `backend answered ${status}: ${message || 'unauthorized'}`);
  }
  // Busy right now, not broken: rate limited (429) or Ollama's full queue (503 "server busy").
  if (status === 429 || (status === 503 && /server busy/i.test(message))) {
    return new UsepodError(
      'USEPOD_BACKEND_BUSY',
      `backend is busy (${status}): ${message || 'too many requests'}`,
    );
  }
  // llama.cpp after a restart answers 503 `unavailable_error` "Loading model" on every route: like an
  // engine not reachable yet, the job fails over before any byte is relayed (PROTOCOL.md 5.4).
  if (status === 503 && (engineErrorCode(body) === 'unavailable_error' || /loading model/i.test(message))) {
    return new UsepodError('USEPOD_BACKEND_UNREACHABLE', `backend is loading (${status}): ${message}`);
  }
  const code = engineErrorCode(body);
  if (
    (status === 404 || status === 400 || status === 503) &&
    (code === 'model_not_found' || code === 'model_not_loaded' || MODEL_NOT_FOUND.test(message))
  ) {
    return new UsepodError('USEPOD_BACKEND_MODEL_NOT_FOUND', `backend answered ${status}: ${message}`);
  }
  // A 404 that is not about the model: the engine has no such route (e.g. no /v1/messages before a build).
  if (status === 404) {
    return new UsepodError('USEPOD_BACKEND_NO_ROUTE', `backend answered 404: ${message || '(empty body)'}`);
  }
  return new UsepodError('USEPOD_BACKEND_HTTP', `backend answered ${status}: ${message || '(empty body)'}`, {
    status,
  });
}

/** The first sample of a gauge in Prometheus text exposition (labels ignored), or undefined. */
export function promGauge(text: string, name: string): number | undefined {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}
