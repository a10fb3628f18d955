import type { IncomingMessage, ServerResponse } from 'node:http';
import { LocalHttpServer } from '../local-server.js';
import { EventLog } from '../wait.js';

/**
 * Shared machinery of the engine emulators: a real HTTP server on 127.0.0.1,
 * a request log, a log of requests the client abandoned, scripted behaviours
 * per request (hang, slow, errors, broken streams), and a "loading" state that
 * closes the listener so clients get ECONNREFUSED, as a loading vLLM does.
 */

export interface EmulatedModel {
  id: string;
  /** Served context window. */
  contextWindow?: number;
  /** Training maximum, where the engine reports one separately. */
  trainContext?: number;
  /** Loaded now (engines with a loaded/unloaded distinction). Default true. */
  loaded?: boolean;
  /** `llm` (default) or `embedding`. */
  type?: 'llm' | 'embedding';
  /** A cloud model listed by the engine but run elsewhere (Ollama `-cloud` models). */
  remote?: boolean;
  /** vLLM: a LoRA adapter on this base model (its card has `max_model_len: null` and this `parent`). */
  parent?: string;
  /** Ollama: a Modelfile `PARAMETER num_ctx`, shown in `/api/show` `parameters`. */
  numCtx?: number;
  /** Venice: the model cannot serve now (`model_spec.offline`). */
  offline?: boolean;
}

export type Behavior =
  | { kind: 'normal' }
  | { kind: 'slow'; tokenDelayMs: number }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Sends headers and the first chunk, then nothing. */
  | { kind: 'hang-after-first' }
  | { kind: 'status'; status: number; body: string; contentType?: string }
  /** An error event inside the 200 stream, after some tokens, in the engine's own style. */
  | { kind: 'error-in-stream'; afterTokens?: number; message?: string }
  /** Destroys the connection after some tokens. */
  | { kind: 'drop'; afterTokens?: number }
  /** Ends the stream without [DONE] and without a finish reason. */
  | { kind: 'no-done' }
  /** 200 with a body that is not an event stream. */
  | { kind: 'not-sse'; body?: string; contentType?: string }
  /** Writes the usage chunk in two halves, with a pause between, so it spans network reads. */
  | { kind: 'split-usage' }
  /** The test writes the stream itself through `controlled` (see `ControlledStream`). */
  | { kind: 'controlled' }
  /** The model calls a tool: `tool_calls` deltas with the arguments in pieces, finish reason `tool_calls`. */
  | { kind: 'tool-call'; name: string; arguments: string }
  /** The model thinks first: deltas carrying `reasoning_content` (older vLLM) or `reasoning` (newer vLLM, Ollama). */
  | { kind: 'reasoning'; field: 'reasoning' | 'reasoning_content'; text: string };

export interface RequestRecord {
  id: number;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown> | undefined;
  rawBody: string;
  at: number;
  /** Every body byte the emulator wrote in its response, in order. */
  sent: Buffer[];
  /** Set when the client closed the connection before the response finished. */
  abortedAt?: number;
}

export interface ControlledStream {
  record: RequestRecord;
  res: ServerResponse;
  write(data: string | Buffer): Promise<void>;
  end(data?: string): void;
}

export interface StreamContext {
  req: IncomingMessage;
  res: ServerResponse;
  record: RequestRecord;
  behavior: Behavior;
  model: string;
  /** Output tokens to produce. */
  tokens: number;
  promptTokens: number;
  includeUsage: boolean;
  tokenDelayMs: number;
  /** True once the client went away. */
  gone(): boolean;
}

export type Route = (ctx: {
  req: IncomingMessage;
  res: ServerResponse;
  record: RequestRecord;
  url: URL;
}) => void | Promise<void>;

export interface EmulatorOptions {
  models?: EmulatedModel[];
  /** Require `Authorization: Bearer <key>` on protected routes. */
  apiKey?: string;
  /** Default output tokens when the request sets no max_tokens. */
  defaultTokens?: number;
  /** Delay between tokens (ms); 0 writes as fast as the socket takes them. */
  tokenDelayMs?: number;
}

export abstract class EngineEmulator {
  abstract readonly kind: string;
  readonly requests = new EventLog<RequestRecord>();
  /** Requests whose connection the client closed before the response ended. */
  readonly aborted = new EventLog<RequestRecord>();
  readonly controlled = new EventLog<ControlledStream>();
  models: EmulatedModel[];
  apiKey: string | undefined;
  defaultTokens: number;
  tokenDelayMs: number;
  readonly #server: LocalHttpServer;
  readonly #queue: { behavior: Behavior; model?: string; times: number }[] = [];
  #nextId = 1;
  #inFlight = 0;
  protected routes = new Map<string, Route>();

  constructor(opts: EmulatorOptions = {}) {
    this.models = opts.models ?? [];
    this.apiKey = opts.apiKey;
    this.defaultTokens = opts.defaultTokens ?? 8;
    this.tokenDelayMs = opts.tokenDelayMs ?? 0;
    this.#server = new LocalHttpServer((req, res) => void this.#handle(req, res));
  }

  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  get url(): string {
    return this.#server.url;
  }

  get port(): number {
    return this.#server.port;
  }

  /** Requests being answered now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async start(port = 0): Promise<this> {
    await this.#server.start(port);
    return this;
  }

  /** Scripts the next `times` streaming requests (optionally only for one model). */
  behave(behavior: Behavior, opts: { times?: number; model?: string } = {}): this {
    this.#queue.push({ behavior, times: opts.times ?? 1, ...(opts.model ? { model: opts.model } : {}) });
    return this;
  }

  /** Scripts every later request until `reset()`. */
  always(behavior: Behavior): this {
    this.#queue.push({ behavior, times: Number.POSITIVE_INFINITY });
    return this;
  }

  reset(): void {
    this.#queue.length = 0;
  }

  /** Removes a route, to emulate an older build without it. */
  removeRoute(method: string, path: string): this {
    this.routes.delete(`${method} ${path}`);
    return this;
  }

  protected takeBehavior(model: string): Behavior {
    const i = this.#queue.findIndex((q) => q.model === undefined || q.model === model);
    if (i === -1) return { kind: 'normal' };
    const q = this.#queue[i]!;
    if (--q.times <= 0) this.#queue.splice(i, 1);
    return q.behavior;
  }

  /** Closes the listener and every connection: clients now get ECONNREFUSED (vLLM while loading, or a dead engine). */
  goDown(): Promise<void> {
    return this.#server.goDown();
  }

  /** Listens again on the same port. */
  comeUp(): Promise<void> {
    return this.#server.comeUp();
  }

  /** Destroys every open connection (an engine crash mid-stream). */
  killConnections(): void {
    this.#server.killConnections();
  }

  close(): Promise<void> {
    return this.#server.close();
  }

  protected authorized(req: IncomingMessage): boolean {
    if (!this.apiKey) return true;
    const auth = req.headers.authorization;
    const xkey = req.headers['x-api-key'];
    return auth === `Bearer ${this.apiKey}` || xkey === this.apiKey;
  }

  /** The engine's 401 answer. */
  protected abstract unauthorized(res: ServerResponse): void;
  /** The engine's answer to an unknown path. */
  protected notFound(res: ServerResponse, _method?: string, _path?: string): void {
    json(res, 404, { error: { message: 'File Not Found', type: 'not_found_error', code: 404 } });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { record, url } = await readRecord(req, this.#nextId++);
    captureBody(res, record.sent);
    this.#inFlight++;
    res.on('close', () => {
      this.#inFlight--;
    });
    watchAbort(res, record, this.aborted);
    this.requests.push(record);
    const route = this.routes.get(`${record.method} ${record.path}`) ?? this.routes.get(`* ${record.path}`);
    if (!route) {
      this.notFound(res, record.method, record.path);
      return;
    }
    try {
      await route({ req, res, record, url });
    } catch (err) {
      if (!res.headersSent)
        json(res, 500, { error: { message: (err as Error).message, type: 'server_error', code: 500 } });
      else res.destroy();
    }
  }

  /** Builds the streaming context of a generation request. */
  protected streamContext(
    req: IncomingMessage,
    res: ServerResponse,
    record: RequestRecord,
    model: string,
  ): StreamContext {
    const body = record.body ?? {};
    const max = typeof body.max_tokens === 'number' ? body.max_tokens : this.defaultTokens;
    const so = body.stream_options as { include_usage?: boolean } | undefined;
    const behavior = this.takeBehavior(model);
    let gone = false;
    res.on('close', () => {
      gone = true;
    });
    return {
      req,
      res,
      record,
      behavior,
      model,
      tokens: Math.max(1, Math.min(max, 4096)),
      promptTokens: promptTokensOf(body),
      includeUsage: so?.include_usage === true,
      tokenDelayMs: behavior.kind === 'slow' ? behavior.tokenDelayMs : this.tokenDelayMs,
      gone: () => gone,
    };
  }

  /** Hands a request to the test when its behaviour is `controlled`. */
  protected handOver(ctx: StreamContext, contentType = 'text/event-stream'): void {
    ctx.res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-cache' });
    ctx.res.flushHeaders();
    this.controlled.push({
      record: ctx.record,
      res: ctx.res,
      write: (data) => writeAndDrain(ctx.res, data),
      end: (data) => ctx.res.end(data),
    });
  }

  findModel(id: string): EmulatedModel | undefined {
    return this.models.find((m) => m.id === id);
  }
}

/** A request read whole and recorded; a JSON body parsed, the bytes kept as sent (a proxy forwards them). */
export async function readRecord(
  req: IncomingMessage,
  id: number,
): Promise<{ record: RequestRecord; url: URL; raw: Buffer }> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  const rawBody = raw.toString('utf8');
  let body: Record<string, unknown> | undefined;
  try {
    body = rawBody ? JSON.parse(rawBody) : undefined;
  } catch {
    body = undefined;
  }
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const record: RequestRecord = {
    id,
    method: req.method ?? 'GET',
    path: url.pathname,
    headers: req.headers,
    body,
    rawBody,
    at: Date.now(),
    sent: [],
  };
  return { record, url, raw };
}

/** Logs the request as aborted when the client closes before the answer finished. */
export function watchAbort(
  res: ServerResponse,
  record: RequestRecord,
  aborted: EventLog<RequestRecord>,
): void {
  let finished = false;
  res.on('finish', () => {
    finished = true;
  });
  res.on('close', () => {
    if (!finished) {
      record.abortedAt = Date.now();
      aborted.push(record);
    }
  });
}

/** Records the response body as written, so tests can compare it with what was relayed. */
function captureBody(res: ServerResponse, into: Buffer[]): void {
  const write = res.write.bind(res) as (...a: unknown[]) => boolean;
  const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
  const keep = (chunk: unknown) => {
    if (typeof chunk === 'string') into.push(Buffer.from(chunk));
    else if (chunk instanceof Uint8Array) into.push(Buffer.from(chunk));
  };
  res.write = ((chunk: unknown, ...rest: unknown[]) => {
    keep(chunk);
    return write(chunk, ...rest);
  }) as ServerResponse['write'];
  res.end = ((chunk?: unknown, ...rest: unknown[]) => {
    if (typeof chunk !== 'function') keep(chunk);
    return end(chunk, ...rest);
  }) as ServerResponse['end'];
}

/** A deterministic prompt size: words in the messages plus a template overhead. */
export function promptTokensOf(body: Record<string, unknown>): number {
  const msgs = Array.isArray(body.messages) ? body.messages : [];
  let words = 0;
  for (const m of msgs as { content?: unknown }[]) {
    if (typeof m?.content === 'string') words += m.content.split(/\s+/).filter(Boolean).length;
  }
  if (typeof body.prompt === 'string') words += body.prompt.split(/\s+/).filter(Boolean).length;
  return words + 5;
}

export function json(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function text(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Writes, and waits for the socket to take it when its buffer is full. */
export function writeAndDrain(res: ServerResponse, data: string | Buffer): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  if (res.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => (ms <= 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

/** The word a token carries in emulated output. */
export function tokenText(i: number): string {
  return `tok${i} `;
}
