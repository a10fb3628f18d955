import { createPublicKey, randomBytes, randomUUID, verify } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { EventLog, withTimeout } from './wait.js';

/**
 * A local coordinator speaking the coordinator side of PROTOCOL.md: it sends
 * challenges, verifies signatures over the decoded nonce, assigns provider ids,
 * dispatches jobs, records every frame, and can drain, close or kill a session.
 */

export interface RecordedFrame {
  session: number;
  dir: 'in' | 'out';
  at: number;
  /** Parsed JSON, or undefined when the frame was not JSON. */
  frame: Record<string, unknown> | undefined;
  raw: string;
  binary: boolean;
}

export type AuthDecision = { ok: true; providerId?: string } | { ok: false; reason: string };

export interface CoordinatorOptions {
  /** Decides each auth attempt after the signature checked out. Default: accept. */
  authorize?: (
    resp: Record<string, unknown>,
    session: CoordinatorSession,
  ) => AuthDecision | Promise<AuthDecision>;
  /** Enrollment code a new key must present (no provider id yet). */
  enrollmentCode?: string;
  /** Replaces the handshake for this connection; return true when it took over. */
  onConnection?: (ws: WebSocket, session: CoordinatorSession) => boolean;
  /** Path served; default `/provider/connect`. */
  path?: string;
  /** Accept permessage-deflate when an agent offers it, as a coordinator may. Default: off. */
  perMessageDeflate?: boolean;
}

export interface JobRequest {
  model_id: string;
  request?: Record<string, unknown>;
  format?: 'openai' | 'anthropic';
  deadline_ms?: number;
  job_id?: string;
  /** Extra or overriding fields, to send malformed jobs on purpose. */
  raw?: Record<string, unknown>;
}

export class JobRun {
  readonly jobId: string;
  readonly chunks: Buffer[] = [];
  terminal: Record<string, unknown> | undefined;
  readonly #done: Promise<Record<string, unknown>>;
  #resolve!: (f: Record<string, unknown>) => void;
  readonly #firstChunk = new EventLog<Buffer>();

  constructor(jobId: string) {
    this.jobId = jobId;
    this.#done = new Promise((r) => {
      this.#resolve = r;
    });
  }

  /** @internal */
  onFrame(f: Record<string, unknown>): void {
    if (f.type === 'job_chunk') {
      const b = Buffer.from(String(f.data), 'base64');
      this.chunks.push(b);
      this.#firstChunk.push(b);
    } else if (f.type === 'job_done' || f.type === 'job_error') {
      this.terminal = f;
      this.#resolve(f);
    }
  }

  /** The concatenated relayed bytes. */
  body(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.body().toString('utf8');
  }

  /** Resolves with the terminal frame (`job_done` or `job_error`). */
  done(timeoutMs = 15_000): Promise<Record<string, unknown>> {
    return withTimeout(this.#done, timeoutMs, `terminal frame of job ${this.jobId}`);
  }

  firstChunk(timeoutMs = 15_000): Promise<Buffer> {
    return this.#firstChunk.waitFor(() => true, timeoutMs, `first chunk of job ${this.jobId}`);
  }
}

export class CoordinatorSession {
  readonly id: number;
  readonly ws: WebSocket;
  readonly frames = new EventLog<Record<string, unknown>>();
  readonly #owner: TestCoordinator;
  readonly jobs = new Map<string, JobRun>();
  authResponse: Record<string, unknown> | undefined;
  providerId: string | undefined;
  nonce: Buffer | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  /** The headers of the agent's WebSocket upgrade request. */
  readonly upgradeHeaders: IncomingHttpHeaders;

  constructor(id: number, ws: WebSocket, owner: TestCoordinator, upgradeHeaders: IncomingHttpHeaders = {}) {
    this.id = id;
    this.ws = ws;
    this.#owner = owner;
    this.upgradeHeaders = upgradeHeaders;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
  }

  /** Sends a frame (object as JSON, string as it is). */
  send(frame: Record<string, unknown> | string): void {
    const raw = typeof frame === 'string' ? frame : JSON.stringify(frame);
    this.#owner.record(this.id, 'out', raw, false);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(raw);
  }

  sendBinary(data: Buffer): void {
    this.#owner.record(this.id, 'out', data.toString('base64'), true);
    this.ws.send(data, { binary: true });
  }

  /** The latest `capabilities` frame (waits for the first). */
  capabilities(timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return this.frames.waitFor((f) => f.type === 'capabilities', timeoutMs, 'capabilities');
  }

  /** Waits for the next frame of a type sent after this call. */
  nextFrame(type: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return this.frames.next((f) => f.type === type, timeoutMs, `a ${type} frame`);
  }

  dispatch(job: JobRequest): JobRun {
    const jobId = job.job_id ?? randomUUID();
    const run = new JobRun(jobId);
    this.jobs.set(jobId, run);
    const frame: Record<string, unknown> = {
      type: 'job',
      job_id: jobId,
      model_id: job.model_id,
      request: job.request ?? { messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 },
      ...(job.format ? { format: job.format } : {}),
      ...(job.deadline_ms !== undefined ? { deadline_ms: job.deadline_ms } : {}),
      ...job.raw,
    };
    this.send(frame);
    return run;
  }

  cancel(jobId: string): void {
    this.send({ type: 'job_cancel', job_id: jobId });
  }

  /** Close 1001 with a drain reason (a coordinator deploy by default). */
  drain(reason: 'drain:deploy' | 'drain:operator' | string = 'drain:deploy'): void {
    this.ws.close(1001, reason);
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }

  /** Drops the TCP connection without a Close frame. */
  kill(): void {
    this.ws.terminate();
  }

  /** Stops reading from the socket, so the agent's writes back up. */
  pauseReading(): void {
    (this.ws as unknown as { _socket: import('node:net').Socket })._socket.pause();
  }

  resumeReading(): void {
    (this.ws as unknown as { _socket: import('node:net').Socket })._socket.resume();
  }

  /** @internal */
  onFrame(f: Record<string, unknown>): void {
    this.frames.push(f);
    const id = typeof f.job_id === 'string' ? f.job_id : undefined;
    if (id) this.jobs.get(id)?.onFrame(f);
  }
}

export class TestCoordinator {
  readonly frames = new EventLog<RecordedFrame>();
  readonly sessions = new EventLog<CoordinatorSession>();
  /** Sessions that reached auth_ok. */
  readonly authenticated = new EventLog<CoordinatorSession>();
  readonly #wss: WebSocketServer;
  readonly #opts: CoordinatorOptions;
  readonly #providerIds = new Map<string, string>();
  #nextSession = 1;
  #nextProvider = 1;

  private constructor(wss: WebSocketServer, opts: CoordinatorOptions) {
    this.#wss = wss;
    this.#opts = opts;
    wss.on('connection', (ws, req) => this.#onConnection(ws, req.headers));
  }

  static async start(opts: CoordinatorOptions = {}): Promise<TestCoordinator> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: opts.path ?? '/provider/connect',
      perMessageDeflate: opts.perMessageDeflate ?? false,
    });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    return new TestCoordinator(wss, opts);
  }

  get url(): string {
    const { port } = this.#wss.address() as AddressInfo;
    return `ws://127.0.0.1:${port}${this.#opts.path ?? '/provider/connect'}`;
  }

  /** Preassigns a provider id to a public key, as if it had enrolled before. */
  knowKey(pubkey: string, providerId: string): void {
    this.#providerIds.set(pubkey, providerId);
  }

  /** @internal */
  record(
    session: number,
    dir: 'in' | 'out',
    raw: string,
    binary: boolean,
  ): Record<string, unknown> | undefined {
    let frame: Record<string, unknown> | undefined;
    if (!binary) {
      try {
        const v = JSON.parse(raw);
        if (v && typeof v === 'object' && !Array.isArray(v)) frame = v;
      } catch {
        frame = undefined;
      }
    }
    this.frames.push({ session, dir, at: Date.now(), frame, raw, binary });
    return frame;
  }

  /** Waits for the next session to authenticate (or returns one already waiting, when `includeExisting`). */
  nextAuthenticated(timeoutMs = 10_000): Promise<CoordinatorSession> {
    return this.authenticated.next(() => true, timeoutMs, 'an authenticated session');
  }

  firstAuthenticated(timeoutMs = 10_000): Promise<CoordinatorSession> {
    return this.authenticated.waitFor(() => true, timeoutMs, 'an authenticated session');
  }

  #onConnection(ws: WebSocket, headers: IncomingHttpHeaders): void {
    const session = new CoordinatorSession(this.#nextSession++, ws, this, headers);
    this.sessions.push(session);
    ws.on('message', (data, isBinary) => {
      const raw = isBinary ? (data as Buffer).toString('base64') : (data as Buffer).toString('utf8');
      const frame = this.record(session.id, 'in', raw, isBinary);
      if (frame) session.onFrame(frame);
    });
    ws.on('error', () => {});
    if (this.#opts.onConnection?.(ws, session)) return;
    void this.#handshake(session);
  }

  async #handshake(session: CoordinatorSession): Promise<void> {
    const nonce = randomBytes(32);
    session.nonce = nonce;
    session.send({ type: 'auth_challenge', nonce: nonce.toString('base64') });
    let resp: Record<string, unknown>;
    try {
      resp = await session.frames.waitFor((f) => f.type === 'auth_response', 10_000, 'auth_response');
    } catch {
      session.close(1008, 'no auth_response');
      return;
    }
    session.authResponse = resp;
    const pubkey = String(resp.pubkey ?? '');
    const signature = String(resp.signature ?? '');
    if (!ed25519Verifies(nonce, signature, pubkey)) {
      session.send({ type: 'auth_failed', reason: 'signature does not verify' });
      session.close(1008, 'auth failed');
      return;
    }
    let providerId = this.#providerIds.get(pubkey);
    if (
      !providerId &&
      this.#opts.enrollmentCode !== undefined &&
      resp.enrollment_code !== this.#opts.enrollmentCode
    ) {
      session.send({ type: 'auth_failed', reason: 'unknown key: an enrollment code is required' });
      session.close(1008, 'auth failed');
      return;
    }
    const decision = (await this.#opts.authorize?.(resp, session)) ?? { ok: true };
    if (!decision.ok) {
      session.send({ type: 'auth_failed', reason: decision.reason });
      session.close(1008, 'auth failed');
      return;
    }
    providerId = decision.providerId ?? providerId ?? `prov_${this.#nextProvider++}`;
    this.#providerIds.set(pubkey, providerId);
    session.providerId = providerId;
    session.send({ type: 'auth_ok', provider_id: providerId });
    this.authenticated.push(session);
  }

  /** Frames the agent sent, parsed, optionally of one type. */
  received(type?: string): Record<string, unknown>[] {
    return this.frames.items
      .filter((f) => f.dir === 'in' && f.frame && (type === undefined || f.frame.type === type))
      .map((f) => f.frame!);
  }

  async close(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

/**
 * Verifies an auth_response as the coordinator does (PROTOCOL.md 2), with Node's own Ed25519 rather than
 * the agent's signing library, so the two cross-check each other.
 */
function ed25519Verifies(message: Buffer, signatureB64: string, publicKeyB64: string): boolean {
  const sig = Buffer.from(signatureB64, 'base64');
  const pub = Buffer.from(publicKeyB64, 'base64');
  if (sig.length !== 64 || pub.length !== 32) return false;
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: pub.toString('base64url') },
      format: 'jwk',
    });
    return verify(null, message, key, sig);
  } catch {
    return false;
  }
}
