import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { errorMessage } from '../errors.js';
import { engineText } from '../untrusted.js';
import type { Logger } from './log.js';
import type { Registry } from './prom.js';
import { redactor } from './redact.js';
import {
  ensureStatusToken,
  isStatusNonce,
  statusProof,
  statusTokenPath,
  tokenMatches,
} from './status-token.js';

/**
 * The local observability server at `observability.prometheus_addr`:
 * `/metrics` (Prometheus text), `/status` (JSON for `usepod-agent status`),
 * `/healthz` (the process answers: liveness) and `/readyz` (it can take jobs: readiness, for
 * orchestrators), `/api/proof` (that this server holds the token, for a page about to send it), and the
 * routes plugins add (`ctx.statusRoute`: the dashboard). It binds to loopback by
 * default. Core keeps the checks every route needs (issue 32): the `Host` (DNS rebinding), the token
 * (`Authorization: Bearer`; for plugin routes but the page's own files, and for `/status` and
 * `/metrics` beyond loopback; never a cookie), the `Origin` of a POST
 * (CSRF), bounded bodies and timeouts.
 */
export interface StatusServerOptions {
  addr: string;
  registry: Registry;
  status: () => unknown;
  /** For `/readyz`; without it `/readyz` answers as `/healthz`. */
  readiness?: () => { ready: boolean; reason?: string };
  /** The routes plugins added, looked up per request. */
  routes?: ReadonlyMap<string, StatusRoute>;
  /** The bearer token (`status-token.ts`); without it plugin routes are refused and beyond loopback all but probes. */
  token?: string;
  /**
   * Without a token (it could not be made: a full disk), tried again when a request needs one, at most
   * every `tokenRetryMs` (5 s): once the disk has room the dashboard is served without a restart.
   */
  makeToken?: () => string | undefined;
  tokenRetryMs?: number;
}

/** How often a missing token is tried again at most: a flood of requests is not a flood of writes. */
const TOKEN_RETRY_MS = 5_000;

/** A request to a plugin's route, once core's checks passed. */
export interface StatusRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  /** A POST's body (at most `MAX_BODY_BYTES`); empty for a GET. */
  readonly body: Buffer;
  /** Aborted when the client goes away (an event stream ends with it). */
  readonly signal: AbortSignal;
}

/** Answers a request: set headers and end `res` (or keep it open for an event stream). */
export type StatusRouteHandler = (req: StatusRequest, res: ServerResponse) => void | Promise<void>;

/**
 * How a route is let in. `bearer` (the default): `Authorization: Bearer` only. `bearer-or-query`: also
 * `?token=`, for a GET an `EventSource` makes (it cannot send headers; the URL goes to this origin only).
 * `none`: a GET of a file that holds no data (the page's HTML, script, styles); still Host-checked.
 * No route is let in by a cookie: a browser sends those to every port of a host.
 */
export type StatusRouteAuth = 'bearer' | 'bearer-or-query' | 'none';

export interface StatusRoute {
  plugin: string;
  method: 'GET' | 'POST';
  path: string;
  handle: StatusRouteHandler;
  /** `bearer` when absent. */
  auth?: StatusRouteAuth;
}

/**
 * `GET /api/proof?nonce=HEX`, no token: `{"proof": hex(HMAC-SHA256(token, STATUS_PROOF_CONTEXT + nonce))}`.
 * A page asks it with a fresh nonce before it sends the token (first load, every reconnect): while the
 * agent restarts another local user may hold the port, and gets the token only if the page sends it.
 */
export const STATUS_PROOF_PATH = '/api/proof';

/** The paths core serves itself: no plugin may take them. */
export const CORE_STATUS_PATHS: ReadonlySet<string> = new Set([
  '/metrics',
  '/status',
  '/healthz',
  '/readyz',
  STATUS_PROOF_PATH,
]);

/** Open at once: pages (16 event streams at most), a scraper, probes, the CLI; far more is a flood. */
export const MAX_CONNECTIONS = 128;

/** A plugin's POST body: a few fields (a pause's duration and reason), never a file. */
export const MAX_BODY_BYTES = 16 * 1024;

/** Headers of every plugin route's answer: its own origin only, no framing, no referrer, no sniffing. */
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
};

/**
 * What every service worker script request gets: a worker that replaces the registered one, removes its
 * registration and reloads the pages it held, so they come from this server again.
 */
const SERVICE_WORKER_REMOVER = `self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.registration.unregister()
  .then(() => self.clients.matchAll({ type: 'window' }))
  .then((pages) => Promise.all(pages.map((p) => p.navigate(p.url))))));
`;

export function parseHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`not host:port: ${addr}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export class StatusServer {
  readonly #server: Server;
  readonly #opts: StatusServerOptions;
  #loopback = true;
  /** Host names the page may be asked for by, besides IPs and localhost: the configured one, this machine's. */
  readonly #names: Set<string>;
  #token: string | undefined;
  #tokenTried = 0;

  constructor(opts: StatusServerOptions) {
    this.#opts = opts;
    this.#token = opts.token;
    const configured = parseHostPort(opts.addr).host.toLowerCase();
    this.#names = new Set([configured, hostname().toLowerCase()]);
    // A slow client (slowloris) is dropped in seconds, not Node's minute. Node checks the timeouts on an
    // interval that runs with no connection too: every 5 s (a slow client goes in 5-10 s), not every second,
    // which woke an idle agent once a second for nothing (decision 0008, seventh pass).
    this.#server = createServer(
      { headersTimeout: 5_000, requestTimeout: 10_000, connectionsCheckingInterval: 5_000 },
      (req, res) => {
        try {
          this.#handle(req, res);
        } catch (err) {
          failed(res, err);
        }
      },
    );
    this.#server.keepAliveTimeout = 5_000;
    // Another local user opening sockets faster than the timeouts close them would take the process's
    // descriptors and memory from the relay: past this many, new ones are closed at once.
    this.#server.maxConnections = MAX_CONNECTIONS;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const opts = this.#opts;
    // Any request (a probe, a scrape, `usepod-agent status`) may find the disk has room for the token again.
    this.#currentToken();
    const url = new URL(req.url ?? '/', 'http://agent.invalid');
    const path = url.pathname;
    const route = opts.routes?.get(path);
    // DNS rebinding: a page on attacker.example that resolves to 127.0.0.1 would read /status. On
    // loopback, and for the page wherever it listens, only an IP, localhost or this machine's own
    // name is served (probes and scrapers use those).
    const page = route !== undefined || path === STATUS_PROOF_PATH;
    if ((this.#loopback || page) && !this.#hostAllowed(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain' }).end('use 127.0.0.1 or localhost\n');
      return;
    }
    // The browser fetches a service worker's script with this header, past every worker, on each
    // navigation it controls. The agent registers none: any is a squatter's (another local user's page
    // on this port while the agent restarted), which would keep answering this origin's pages.
    if (req.headers['service-worker'] === 'script') {
      req.resume();
      res.writeHead(200, { ...PAGE_HEADERS, 'content-type': 'text/javascript' }).end(SERVICE_WORKER_REMOVER);
      return;
    }
    if (path === STATUS_PROOF_PATH) {
      this.#proof(req, url, res);
      return;
    }
    if (route) {
      this.#route(route, url, req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    // Beyond loopback what the agent serves, earns and is called needs the token; probes never do.
    if ((path === '/metrics' || path === '/status') && !this.#loopback && !this.#authorized(req, url)) {
      unauthorized(res);
      return;
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': opts.registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(err.message);
        },
      );
      return;
    }
    if (path === '/status') {
      // Redacted: the status endpoint must never carry a secret.
      const body = JSON.stringify(redactor.redactFields(opts.status()));
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    if (path === '/readyz') {
      const r = opts.readiness?.() ?? { ready: true };
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end(r.ready ? 'ready\n' : `not ready: ${engineText(r.reason ?? 'unknown', 300)}\n`);
      return;
    }
    if (path === '/healthz' || path === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /metrics, /status, /healthz or /readyz\n');
  }

  /** A plugin's route: the token, then for a POST its origin and its bounded body, then the handler. */
  #route(route: StatusRoute, url: URL, req: IncomingMessage, res: ServerResponse): void {
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== route.method) {
      res.writeHead(405, { allow: route.method === 'GET' ? 'GET, HEAD' : 'POST' }).end();
      return;
    }
    const need = route.auth ?? 'bearer';
    if (need !== 'none' && !this.#authorized(req, url, need === 'bearer-or-query' && method === 'GET')) {
      unauthorized(res);
      return;
    }
    if (method === 'POST') {
      // CSRF, in depth: the bearer header already needs a script of this origin (another origin's
      // would need CORS, never granted); an Origin or a fetch site of elsewhere is refused even so.
      const origin = req.headers.origin;
      const own = `http://${req.headers.host ?? ''}`;
      if ((origin !== undefined && origin !== own) || req.headers['sec-fetch-site'] === 'cross-site') {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('cross-origin request refused\n');
        return;
      }
    }
    // The handler never sees the token.
    url.searchParams.delete('token');
    const signal = abortedWith(req, res);
    const run = (body: Buffer) => {
      for (const [k, v] of Object.entries(PAGE_HEADERS)) res.setHeader(k, v);
      const request: StatusRequest = {
        method: method as 'GET' | 'POST',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body,
        signal,
      };
      Promise.resolve()
        .then(() => route.handle(request, res))
        .catch((err: unknown) => failed(res, err));
    };
    if (method === 'GET') {
      req.resume();
      run(Buffer.alloc(0));
      return;
    }
    readBody(req, MAX_BODY_BYTES).then(run, () => {
      if (!res.headersSent) res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`a body is at most ${MAX_BODY_BYTES} bytes\n`);
    });
  }

  /**
   * The proof that this server holds the token. Open to anyone (it proves, never grants) and cheap: one
   * HMAC of at most 93 bytes, under the connection cap and timeouts every route has.
   */
  #proof(req: IncomingMessage, url: URL, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const nonces = url.searchParams.getAll('nonce');
    const nonce = nonces.length === 1 ? nonces[0]! : '';
    const token = this.#currentToken();
    const proof = token ? statusProof(token, nonce) : undefined;
    if (!proof) {
      const [status, why] = !isStatusNonce(nonce)
        ? [400, 'nonce: one of 32 to 64 lowercase hex characters (?nonce=...)']
        : [503, 'no status token yet: the agent could not write status.token (see its log)'];
      res.writeHead(status, { ...PAGE_HEADERS, 'content-type': 'text/plain' }).end(`${why}\n`);
      return;
    }
    res.writeHead(200, { ...PAGE_HEADERS, 'content-type': 'application/json' });
    res.end(JSON.stringify({ proof }));
  }

  /** The token, made now if it could not be before and the last try is `tokenRetryMs` old. */
  #currentToken(): string | undefined {
    const make = this.#opts.makeToken;
    if (this.#token || !make) return this.#token;
    const now = Date.now();
    if (now - this.#tokenTried < (this.#opts.tokenRetryMs ?? TOKEN_RETRY_MS)) return undefined;
    this.#tokenTried = now;
    this.#token = make();
    return this.#token;
  }

  /** The token from `Authorization: Bearer`, or `?token=` where the route takes it; never a cookie. */
  #authorized(req: IncomingMessage, url: URL, query = false): boolean {
    const token = this.#currentToken();
    if (!token) return false;
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (tokenMatches(bearer, token)) return true;
    return query && tokenMatches(url.searchParams.get('token') ?? undefined, token);
  }

  #hostAllowed(host: string | undefined): boolean {
    if (host === undefined) return true;
    const name = host
      .replace(/:\d{1,5}$/, '')
      .replace(/^\[(.*)\]$/, '$1')
      .toLowerCase();
    return localHost(name) || this.#names.has(name);
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = parseHostPort(this.#opts.addr);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        const bound = this.#server.address() as AddressInfo;
        this.#loopback = isLoopback(bound.address);
        resolve();
      });
    });
    return this.#server.address() as AddressInfo;
  }

  address(): AddressInfo | undefined {
    return (this.#server.address() as AddressInfo | null) ?? undefined;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A host name that is an address or localhost (any port); absent is HTTP/1.0's way. */
function localHost(name: string): boolean {
  return isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost');
}

function unauthorized(res: ServerResponse): void {
  res.writeHead(401, {
    'content-type': 'text/plain',
    'www-authenticate': 'Bearer',
    'cache-control': 'no-store',
  });
  res.end(
    'the status token is required (Authorization: Bearer): open the address `usepod-agent dashboard` prints\n',
  );
}

/** A handler's failure is this request's, never the process's; its text is folded. */
function failed(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(500, { 'content-type': 'text/plain' });
  res.end(`status unavailable: ${engineText(errorMessage(err), 200)}\n`);
}

/** Aborted when the client closes before the answer ended. */
function abortedWith(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.once('close', () => ac.abort());
  req.once('error', () => ac.abort());
  return ac.signal;
}

/** The body, or a rejection past `max` bytes (declared or sent). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > max) {
      req.resume();
      reject(new Error('too large'));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new Error('too large'));
        return;
      }
      parts.push(b);
    });
    req.once('end', () => resolve(Buffer.concat(parts)));
    req.once('error', reject);
  });
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/**
 * Starts the status server at `addr`, or logs why not: the agent keeps serving jobs without its local
 * status page. Makes the token beside the key on first use. Says when it listens beyond loopback
 * (`/status` and `/metrics` then need the token; `/healthz` and `/readyz` stay open for probes).
 */
export async function serveStatus(o: {
  addr: string;
  registry: StatusServerOptions['registry'];
  status: StatusServerOptions['status'];
  log: Logger;
  readiness?: StatusServerOptions['readiness'];
  routes?: StatusServerOptions['routes'];
  keyPath: string;
  /** `observability.token_file`: the token's file when it is not beside the key. */
  tokenFile?: string | undefined;
  /** How often a token that could not be made is tried again at most (tests). */
  tokenRetryMs?: number;
}): Promise<StatusServer | undefined> {
  const { addr, log } = o;
  let token: string | undefined;
  try {
    token = ensureStatusToken(o.keyPath, o.tokenFile);
    // No log line, error or status body may ever carry it.
    redactor.add(token);
  } catch (err) {
    log.warn(
      'the status token could not be made: the dashboard is refused, and beyond loopback so are /status and /metrics, until it can be (tried again when asked)',
      {
        file: statusTokenPath(o.keyPath, o.tokenFile),
        error: errorMessage(err),
      },
    );
  }
  const server = new StatusServer({
    addr,
    registry: o.registry,
    status: o.status,
    ...(o.readiness ? { readiness: o.readiness } : {}),
    ...(o.routes ? { routes: o.routes } : {}),
    ...(token ? { token } : {}),
    // Tried again once a request needs it: the disk may have room by then. Quiet while it still fails.
    makeToken: () => {
      try {
        const made = ensureStatusToken(o.keyPath, o.tokenFile);
        redactor.add(made);
        log.info('the status token is made now: the dashboard is served', {
          file: statusTokenPath(o.keyPath, o.tokenFile),
        });
        return made;
      } catch {
        return undefined;
      }
    },
    ...(o.tokenRetryMs !== undefined ? { tokenRetryMs: o.tokenRetryMs } : {}),
  });
  try {
    const bound = await server.listen();
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    log.info('metrics and status served', { url: `http://${host}:${bound.port}/metrics` });
    if (!isLoopback(bound.address)) {
      log.warn(
        'metrics and status are served beyond this machine: /status, /metrics and the dashboard need the token of status.token beside the key (Authorization: Bearer); set observability.prometheus_addr to 127.0.0.1:PORT unless that is intended',
        { addr },
      );
    }
    return server;
  } catch (err) {
    log.warn('metrics server not started; change observability.prometheus_addr or set it to "off"', {
      addr,
      error: errorMessage(err),
    });
    return undefined;
  }
}
