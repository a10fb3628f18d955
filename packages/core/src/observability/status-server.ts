import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../errors.js';
import { engineText } from '../untrusted.js';
import type { Logger } from './log.js';
import { redactor } from './redact.js';

/**
 * The local observability server at `observability.prometheus_addr`:
 * `/metrics` (Prometheus text), `/status` (JSON for `usepod-agent status`),
 * `/healthz` (the process answers: liveness) and `/readyz` (it can take jobs: readiness, for
 * orchestrators). It binds to loopback by default and serves nothing else.
 */
export interface StatusServerOptions {
  addr: string;
  registry: Registry;
  status: () => unknown;
  /** For `/readyz`; without it `/readyz` answers as `/healthz`. */
  readiness?: () => { ready: boolean; reason?: string };
}

export function parseHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`not host:port: ${addr}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export class StatusServer {
  readonly #server: Server;
  readonly #opts: StatusServerOptions;
  #loopback = true;

  constructor(opts: StatusServerOptions) {
    this.#opts = opts;
    // A slow client (slowloris) is dropped in seconds, not Node's minute; timeouts are checked each second.
    this.#server = createServer(
      { headersTimeout: 5_000, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 },
      (req, res) => {
        try {
          this.#handle(req, res);
        } catch (err) {
          // A status that cannot be made is this request's failure, never the process's.
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`status unavailable: ${engineText(errorMessage(err), 200)}\n`);
        }
      },
    );
    this.#server.keepAliveTimeout = 5_000;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const opts = this.#opts;
    // DNS rebinding: a page on attacker.example that resolves to 127.0.0.1 would read /status. On
    // loopback only an IP or localhost Host is served (probes and scrapers use those).
    if (this.#loopback && !localHost(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain' }).end('use 127.0.0.1 or localhost\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
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

  async listen(): Promise<AddressInfo> {
    const { host, port } = parseHostPort(this.#opts.addr);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        this.#loopback = isLoopback((this.#server.address() as AddressInfo).address);
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

/** A Host header naming this machine by address or as localhost (any port); absent is HTTP/1.0's way. */
function localHost(host: string | undefined): boolean {
  if (host === undefined) return true;
  const name = host
    .replace(/:\d{1,5}$/, '')
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase();
  return isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost');
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/**
 * Starts the status server at `addr`, or logs why not: the agent keeps serving jobs without its local
 * status page. Warns when it listens beyond loopback (models, earnings and the provider id are on it).
 */
export async function serveStatus(
  addr: string,
  registry: StatusServerOptions['registry'],
  status: StatusServerOptions['status'],
  log: Logger,
  readiness?: StatusServerOptions['readiness'],
): Promise<StatusServer | undefined> {
  const server = new StatusServer({ addr, registry, status, ...(readiness ? { readiness } : {}) });
  try {
    const bound = await server.listen();
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    log.info('metrics and status served', { url: `http://${host}:${bound.port}/metrics` });
    if (!isLoopback(bound.address)) {
      log.warn(
        'metrics and status are served beyond this machine: anyone who reaches the port sees models, earnings and the provider id; set observability.prometheus_addr to 127.0.0.1:PORT unless that is intended',
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
