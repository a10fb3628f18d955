import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import type { Readable } from 'node:stream';
import { isUsepodError, UsepodError } from '../errors.js';
import { guardBody } from '../relay/read-chunks.js';
import { errorText } from '../relay/stream-scan.js';
import type { StreamRequest } from './backend.js';
import { answered, EnginePool, noteKeepAlive } from './engine-pool.js';

/**
 * HTTP to engines through Node's own client: one keep-alive pool per backend (`engine-pool.ts`),
 * streamed bodies as Node Readables (pausable, for backpressure), aborts that destroy the socket at
 * once, and errors mapped to the codes of PROTOCOL.md 5.4. See docs/decisions/0002-undici-for-engine-http.md
 * and its successor in 0008 (ninth pass).
 */

/**
 * Codes of a connection that could not be made or was dropped. The `UND_ERR_*` ones are no longer ours
 * but stay: `isConnectError()` is a plugin's too, and Node's global `fetch` (undici inside) throws them.
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
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** A new pool of connections for one backend (`sendRequest()` and `getJson()` take it). */
export function createPool(): EnginePool {
  return new EnginePool();
}

export type { EnginePool };

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The engine's body, with a 16 KiB high-water mark; destroying it closes the connection. */
  body: Readable;
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
  /** The job's abort as an emitter fired with `signal` (`StreamRequest.abort`): listened to instead. */
  abort?: StreamRequest['abort'];
}

interface Target {
  protocol: string;
  hostname: string;
  port: string;
  path: string;
  origin: string;
}

/**
 * The parts of an engine URL, parsed once: the WHATWG URL parser on every call is a cost a cold agent
 * pays on each job's way to its engine (decision 0004).
 */
const parsedUrls = new Map<string, Target>();
function splitUrl(url: string): Target {
  let hit = parsedUrls.get(url);
  if (!hit) {
    const u = new URL(url);
    hit = {
      protocol: u.protocol,
      // `[::1]` in a URL, `::1` for a socket.
      hostname: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
      port: u.port,
      path: `${u.pathname}${u.search}`,
      origin: u.origin,
    };
    // Engines have a handful of endpoints each; the bound only guards against a plugin that varies them.
    if (parsedUrls.size >= 256) parsedUrls.clear();
    parsedUrls.set(url, hit);
  }
  return hit;
}

type Abort = NonNullable<StreamRequest['abort']> | AbortSignal;

function abortError(abort: Abort): unknown {
  return abort.reason ?? Object.assign(new Error('the request was aborted'), { name: 'AbortError' });
}

/** The engine began an answer, then the connection dropped: it took the job (not unreachable). */
function brokenAnswer(t: Target, code: string, cause: unknown): UsepodError {
  const message = `${t.origin} began its answer, then dropped the connection: ${code}`;
  return new UsepodError('USEPOD_BACKEND_STREAM', message, { cause });
}

/** A request failed on a kept-alive socket before any byte of an answer: the engine had closed it. */
const STALE = Symbol('stale');
/** Attempts on reused sockets before the failure is the job's; a new socket's failure always is. */
const MAX_STALE_RETRIES = 2;

/**
 * One attempt. Aborting destroys the request, and with it the socket, at once: engines notice a cancel
 * by the closed connection (ENGINES.md). The abort is listened to until the body closes.
 */
function attempt(pool: EnginePool, t: Target, opts: SendOptions, abort: Abort | undefined) {
  return new Promise<HttpResult | typeof STALE>((resolve, reject) => {
    let req: ClientRequest;
    let res: IncomingMessage | undefined;
    const onAbort = (): void => {
      const reason = abortError(abort!);
      if (res) res.destroy(reason instanceof Error ? reason : undefined);
      else reject(reason);
      req.destroy();
    };
    const unlisten = (): void => {
      if (!abort) return;
      if ('addEventListener' in abort) abort.removeEventListener('abort', onAbort);
      else abort.off('abort', onAbort);
    };
    try {
      req = request({
        agent: pool.agentFor(t.protocol),
        protocol: t.protocol,
        hostname: t.hostname,
        port: t.port || undefined,
        path: t.path,
        method: opts.method,
        headers: opts.headers,
      });
    } catch (err) {
      reject(err);
      return;
    }
    if (abort) {
      if ('addEventListener' in abort) abort.addEventListener('abort', onAbort, { once: true });
      else abort.once('abort', onAbort);
    }
    req.on('error', (err) => {
      if (res) return; // after the answer began, its body carries the failure
      unlisten();
      const code = errCode(err);
      // The engine began an answer (part of a status line or headers), then the connection dropped: it
      // may have run the job, so it is not unreachable and no other engine may get it (PROTOCOL.md 5.4).
      if (code !== undefined && answered(req.socket)) reject(brokenAnswer(t, code, err));
      // Nothing of an answer came on a socket the engine may have closed while it sat idle: a new one.
      else if (req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) resolve(STALE);
      else reject(err);
    });
    // Closed with neither an answer nor an error: Node drops a connection the engine switched to another
    // protocol (a 101 with bytes after it) that way, and the job would otherwise wait for its deadline.
    req.once('close', () => {
      if (res) return;
      unlisten();
      reject(new Error('the engine closed the connection without an answer'));
    });
    req.on('response', (r) => {
      res = r;
      noteKeepAlive(r.socket, r.headers['keep-alive'] as string | undefined);
      r.once('close', unlisten);
      resolve({ status: r.statusCode ?? 0, headers: r.headers, body: guardBody(r) });
    });
    req.end(opts.body);
  });
}

/**
 * Sends a request; a connection that failed before any byte of an answer is `USEPOD_BACKEND_UNREACHABLE`
 * (the job may go to another engine), one that failed after the engine began answering
 * `USEPOD_BACKEND_STREAM` (it may not).
 */
export async function send(pool: EnginePool, url: string, opts: SendOptions): Promise<HttpResult> {
  const target = splitUrl(url);
  const abort = opts.abort ?? opts.signal;
  try {
    if (abort?.aborted) throw abortError(abort);
    for (let retries = 0; ; retries++) {
      const res = await attempt(pool, target, opts, abort);
      if (res !== STALE) return res;
      if (retries === MAX_STALE_RETRIES) {
        throw Object.assign(new Error('the engine closed the connection before answering'), {
          code: 'ECONNRESET',
        });
      }
    }
  } catch (err) {
    if (opts.signal?.aborted || abort?.aborted || isUsepodError(err)) throw err;
    const code = errCode(err);
    if (code) {
      throw new UsepodError('USEPOD_BACKEND_UNREACHABLE', `cannot reach ${target.origin}: ${code}`, {
        cause: err,
      });
    }
    throw new UsepodError(
      'USEPOD_BACKEND_HTTP',
      `request to ${target.origin} failed: ${(err as Error).message}`,
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
  pool: EnginePool,
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
