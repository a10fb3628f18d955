import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * The keep-alive connections of one backend, on Node's own HTTP client: `node:http` parses with the
 * llhttp built into the binary, where undici loads 31 modules and compiles llhttp's WebAssembly, whose
 * compiler threads leave ~10 MB of malloc arenas resident (decision 0008, ninth pass). One agent per
 * scheme, made on first use: local engines are http, remote OpenAI-compatible APIs https.
 */

/** Sockets per engine, as undici's `connections` was: more than any engine runs at once. */
const MAX_SOCKETS = 512;
/** How long an idle connection is kept when the engine does not say (`Keep-Alive: timeout=N`). */
const IDLE_MS = 30_000;
/** The only timeout of a request: reaching the engine. Never one while it thinks or streams. */
export const CONNECT_TIMEOUT_MS = 10_000;
/**
 * A response body's buffer (IncomingMessage takes its socket's): what a paused relay holds per stream
 * on top of kernel buffers (bench lane E, decision 0004).
 */
export const HIGH_WATER_MARK = 16 * 1024;

/**
 * Node's rule for the engine's hint: a second less than it says; nothing left, no reuse. The parameter is
 * found wherever it comes in the list (Node's own agent reads it only first: `max=100, timeout=5`).
 */
const HINT = /(?:^|,)\s*timeout\s*=\s*(\d+)/i;
const kIdleMs = Symbol('usepod.idleMs');
const kReadAtReuse = Symbol('usepod.readAtReuse');
type PooledSocket = Duplex & { [kIdleMs]?: number; [kReadAtReuse]?: number };

/** Called by `send()` with a response's `Keep-Alive` header, before the socket goes back to the pool. */
export function noteKeepAlive(socket: Duplex, header: string | undefined): void {
  if (header === undefined) return;
  const hint = HINT.exec(header)?.[1];
  if (hint !== undefined) (socket as PooledSocket)[kIdleMs] = Math.min(IDLE_MS, Number(hint) * 1000 - 1000);
}

function connectTimeout(): Error {
  return Object.assign(new Error(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s`), {
    code: 'ETIMEDOUT',
  });
}

/**
 * The rules undici had, on Node's agents: a connect timeout and no other, and idle sockets closed after
 * `IDLE_MS` or the engine's hint. Node's own `timeout` option would also arm a timer on sockets in use,
 * refreshed on every read, and emit `timeout` on a request whose engine thinks for minutes.
 */
function armConnectTimeout(socket: Duplex | null | undefined, connectedEvent: string): void {
  if (!socket) return;
  const timer = setTimeout(() => socket.destroy(connectTimeout()), CONNECT_TIMEOUT_MS);
  const clear = (): void => clearTimeout(timer);
  socket.once(connectedEvent, clear);
  socket.once('close', clear);
}

/** After Node's own `keepSocketAlive` (keep-alive probes, unref): the idle timeout, or no reuse. */
function keepIdle(socket: Duplex): boolean {
  const idle = (socket as PooledSocket)[kIdleMs] ?? IDLE_MS;
  if (idle <= 0) return false;
  (socket as Socket).setTimeout(idle);
  return true;
}

/** In use: no timer (an engine may think for minutes before its first byte); the hint is per response. */
function inUse(socket: Duplex): void {
  (socket as Socket).setTimeout(0);
  (socket as PooledSocket)[kIdleMs] = undefined;
  (socket as PooledSocket)[kReadAtReuse] = (socket as Socket).bytesRead;
}

/**
 * True when a byte came on the socket since the request on it took it (a new socket: any byte; a reused
 * one: since it left the pool): the engine took the request and began an answer (a status line, a 100
 * Continue), so sending it again, there or to another engine, would run it twice. `bytesRead` counts
 * cleartext on TLS: a handshake or an engine's close_notify is no answer.
 */
export function answered(socket: Duplex | null | undefined): boolean {
  if (!socket) return false;
  return (socket as Socket).bytesRead > ((socket as PooledSocket)[kReadAtReuse] ?? 0);
}

type ConnectArgs = Parameters<HttpAgent['createConnection']>;
type ReuseArgs = Parameters<HttpAgent['reuseSocket']>;

/**
 * Node's agent for one scheme with the rules above. `connected`: when the connect timeout ends, `connect`
 * for TCP, `secureConnect` for TLS (once the handshake is done, as undici's connect timeout counted it).
 */
function engineAgent(Base: typeof HttpAgent, connected: string): typeof HttpAgent {
  return class extends Base {
    override createConnection(...args: ConnectArgs): Duplex | null | undefined {
      const socket = super.createConnection(...args);
      armConnectTimeout(socket, connected);
      return socket;
    }
    override keepSocketAlive(socket: Duplex): boolean {
      super.keepSocketAlive(socket);
      return keepIdle(socket);
    }
    override reuseSocket(...args: ReuseArgs): void {
      super.reuseSocket(...args);
      inUse(args[0]);
    }
  };
}

const EngineHttpAgent = engineAgent(HttpAgent, 'connect');
const EngineHttpsAgent = engineAgent(HttpsAgent, 'secureConnect');

const AGENT_OPTIONS = {
  keepAlive: true,
  // TCP keep-alive probes after a minute of silence, as undici's connector set them (Node's default: 1 s).
  keepAliveMsecs: 60_000,
  maxSockets: MAX_SOCKETS,
  maxFreeSockets: MAX_SOCKETS,
  scheduling: 'lifo',
  // Passed on to each socket: the response body takes its socket's high-water mark.
  highWaterMark: HIGH_WATER_MARK,
} as const;

/** What `createPool()` returns and `sendRequest()`/`getJson()` take: a backend's connections to its engine. */
export class EnginePool {
  #http: HttpAgent | undefined;
  #https: HttpAgent | undefined;
  #destroyed = false;

  /** The agent for a URL's protocol (`http:` or `https:`). */
  agentFor(protocol: string): HttpAgent {
    if (this.#destroyed)
      throw Object.assign(new Error('the engine pool is closed'), { code: 'ERR_POOL_CLOSED' });
    if (protocol === 'https:') {
      this.#https ??= new EngineHttpsAgent(AGENT_OPTIONS);
      return this.#https;
    }
    this.#http ??= new EngineHttpAgent(AGENT_OPTIONS);
    return this.#http;
  }

  /** Closes every connection, in use or idle; the pool takes no more requests. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    this.#http?.destroy();
    this.#https?.destroy();
  }
}
