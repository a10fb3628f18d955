import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { errorMessage, UsepodError } from '../errors.js';
import type { PersistedIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { HeartbeatStats } from '../observability/stats.js';
import type { AgentHooks } from '../plugins/hooks.js';
import type { Executor, JobSink } from '../relay/executor.js';
import {
  type AuthResponseFrame,
  type CapabilitiesFrame,
  type HeartbeatFrame,
  parseInbound,
  UUID_RE,
} from './frames.js';
import { answerPings } from './pings.js';
import type { ProviderIdSaver } from './provider-id.js';

/**
 * One WebSocket connection to the coordinator, from dial to close: handshake
 * (PROTOCOL.md section 2), capabilities (3), heartbeats (4), job frames (5),
 * and the classification of how it ended (6). Reconnecting is the connector's job.
 */

export type { CloseKind } from './close-kind.js';

import type { CloseKind } from './close-kind.js';

export interface SessionEnd {
  /** The session reached `auth_ok`. */
  reachedAuth: boolean;
  kind: CloseKind;
  code?: number;
  reason?: string;
  /** What went wrong, for unexpected ends; never holds a secret. */
  detail?: string;
  /** The coded error of an end the coordinator caused: refused authentication, or a protocol error. */
  error?: UsepodError;
}

export interface SessionOptions {
  url: string;
  identity: PersistedIdentity;
  /** Writes the provider id the coordinator assigns: the connector's, ended by the agent's stop. */
  providerIds: ProviderIdSaver;
  enrollmentCode: string | undefined;
  agentVersion: string;
  hooks: AgentHooks;
  log: Logger;
  executor: Executor;
  capabilities: () => Promise<CapabilitiesFrame>;
  heartbeat: () => HeartbeatStats;
  heartbeatIntervalMs: number;
  handshakeTimeoutMs: number;
  maxInboundBytes: number;
  /** Outbound buffer above which relays pause reading their engines. */
  highWaterBytes: number;
  /** Outbound buffer under which paused relays resume. */
  lowWaterBytes: number;
  /** Told when relays pause (true) and resume (false). */
  onBackpressure?(paused: boolean): void;
  onOnline(providerId: string | undefined): void;
}

/** A frame given as bytes (chunk-frame.ts) is still a text frame: its bytes are ASCII JSON. */
const TEXT = { binary: false } as const;

/** Frames corked at most before they are flushed within a turn: bounds what one burst delays. */
const COALESCE_FRAMES = 16;

/** Close codes and reasons that mean the coordinator let us go on purpose (PROTOCOL.md 6). */
export function classifyClose(code: number, reason: string): CloseKind {
  if (code === 1005) return 'graceful'; // a Close frame without a payload
  if (code === 1001) {
    if (reason === 'drain:deploy') return 'deploy';
    if (reason === 'drain:operator') return 'operator';
    return 'graceful';
  }
  return 'unexpected';
}

export class Session implements JobSink {
  readonly #o: SessionOptions;
  #ws: WebSocket | undefined;
  #socket: Socket | undefined;
  #state: 'connecting' | 'await_challenge' | 'await_result' | 'online' | 'closed' = 'connecting';
  #end: SessionEnd | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #drainWaiters: (() => void)[] = [];
  #stopRequested = false;
  #wasOnline = false;
  readonly #onWritten = () => this.#checkDrained();
  /** A frame was sent since the last check phase: later frames of this turn are corked (see send()). */
  #turnStarted = false;
  /** Frames corked since the last flush. */
  #corked = 0;
  readonly #endTurn = () => {
    this.#turnStarted = false;
    this.#flush();
  };

  constructor(opts: SessionOptions) {
    this.#o = opts;
  }

  get online(): boolean {
    return this.#state === 'online';
  }

  /** Runs the session until the connection ends; never rejects. */
  run(): Promise<SessionEnd> {
    return new Promise<SessionEnd>((resolve) => {
      const { log } = this.#o;
      let settled = false;
      const finish = (end: SessionEnd) => {
        if (settled) return;
        settled = true;
        this.#teardown();
        resolve(end);
      };
      let ws: WebSocket;
      try {
        ws = new WebSocket(this.#o.url, {
          perMessageDeflate: false,
          maxPayload: this.#o.maxInboundBytes,
          handshakeTimeout: this.#o.handshakeTimeoutMs,
          // TLS verification stays on: there is deliberately no switch for it.
          rejectUnauthorized: true,
          headers: { 'user-agent': `usepod-agent/${this.#o.agentVersion}` },
          // Pings are answered below, coalesced: ws's own answer drops the session after 60 pending pongs.
          autoPong: false,
        });
      } catch (err) {
        finish({ reachedAuth: false, kind: 'unexpected', detail: errorMessage(err) });
        return;
      }
      this.#ws = ws;
      ws.on('upgrade', (res) => {
        this.#socket = res.socket as Socket;
        this.#socket.on('drain', this.#onWritten);
      });
      answerPings(ws);
      ws.on('open', () => {
        this.#state = 'await_challenge';
        this.#handshakeTimer = setTimeout(() => {
          this.#protocolError('no auth_challenge/auth result within the handshake timeout');
        }, this.#o.handshakeTimeoutMs);
      });
      const failed = (err: unknown) => {
        log.error('session handler failed', { error: errorMessage(err) });
        this.#protocolError(errorMessage(err));
      };
      ws.on('message', (data, isBinary) => {
        // Online frames (jobs, cancels) are handled in this same call, with no promise per frame.
        if (this.#state === 'online') {
          try {
            this.#onOnlineFrame(data as Buffer, isBinary);
          } catch (err) {
            failed(err);
          }
          return;
        }
        this.#onHandshakeFrame(data as Buffer, isBinary).catch(failed);
      });
      ws.on('error', (err) => {
        const tooBig = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
        const detail = tooBig
          ? `the coordinator sent a frame over the ${this.#o.maxInboundBytes}-byte limit`
          : errorMessage(err);
        this.#end ??= { reachedAuth: this.#reachedAuth(), kind: 'unexpected', detail };
        // 'close' follows an 'error' once the socket is torn down.
        if (ws.readyState === WebSocket.CLOSED) finish(this.#end);
      });
      ws.on('close', (code, reasonBuf) => {
        const reason = reasonBuf.toString('utf8');
        const reachedAuth = this.#reachedAuth();
        if (this.#end) {
          finish({ ...this.#end, reachedAuth, code, reason });
          return;
        }
        const kind = this.#stopRequested ? 'stopped' : classifyClose(code, reason);
        finish({
          reachedAuth,
          kind,
          code,
          reason,
          ...(code === 1006 ? { detail: 'connection lost without a Close frame' } : {}),
        });
      });
    });
  }

  #reachedAuth(): boolean {
    return this.#wasOnline;
  }

  /** Frames before authentication: the challenge, then auth_ok or auth_failed. */
  async #onHandshakeFrame(data: Buffer, isBinary: boolean): Promise<void> {
    const { log } = this.#o;
    if (this.#state === 'closed') return;
    if (isBinary) return this.#protocolError('binary frame during the handshake');
    const parsed = parseInbound(data.toString('utf8'));
    if (!parsed.ok) return this.#protocolError(`bad handshake frame: ${parsed.reason}`);
    const f = parsed.frame;
    if (this.#state === 'await_challenge') {
      if (f.type !== 'auth_challenge') return this.#protocolError(`expected auth_challenge, got ${f.type}`);
      this.#state = 'await_result';
      await this.#respond(f.nonce);
      return;
    }
    if (this.#state === 'await_result') {
      if (f.type === 'auth_failed') {
        this.#end = {
          reachedAuth: false,
          kind: 'auth_failed',
          reason: f.reason,
          error: new UsepodError(
            'USEPOD_COORDINATOR_AUTH_FAILED',
            `the coordinator refused this agent: ${f.reason}`,
          ),
        };
        log.error('coordinator refused authentication', { reason: f.reason });
        this.#ws?.close(1000);
        return;
      }
      if (f.type !== 'auth_ok') return this.#protocolError(`expected auth_ok or auth_failed, got ${f.type}`);
      await this.#authenticated(f.provider_id);
    }
  }

  /** Authenticated: jobs and cancels; anything odd is logged at debug level and ignored. */
  #onOnlineFrame(data: Buffer, isBinary: boolean): void {
    const { log } = this.#o;
    if (isBinary) {
      log.debug('ignored binary frame', { bytes: data.length });
      return;
    }
    const text = data.toString('utf8');
    const parsed = parseInbound(text);
    if (!parsed.ok) {
      const fields = { reason: parsed.reason, type: parsed.type, job_id: parsed.jobId };
      if (parsed.type !== 'job') {
        log.debug('ignored frame', fields);
      } else if (parsed.jobId !== undefined && UUID_RE.test(parsed.jobId)) {
        log.warn('refused malformed job frame', fields);
        this.#o.executor.refuse(parsed.jobId, this, parsed.reason);
      } else {
        log.warn('dropped malformed job frame', fields);
      }
      return;
    }
    const f = parsed.frame;
    if (f.type === 'job') {
      log.debug('job received', { job_id: f.job_id, model: f.model_id, format: f.format });
      this.#o.executor.accept(f, this, text.length);
    } else if (f.type === 'job_cancel') {
      const known = this.#o.executor.cancel(f.job_id);
      log.debug('job_cancel', { job_id: f.job_id, known });
    } else {
      log.debug('ignored frame', { type: f.type });
    }
  }

  async #respond(nonceB64: string): Promise<void> {
    const { identity } = this.#o;
    const nonce = Buffer.from(nonceB64, 'base64');
    let frame: AuthResponseFrame = {
      type: 'auth_response',
      pubkey: identity.publicKey,
      signature: identity.sign(nonce),
      agent_version: this.#o.agentVersion,
    };
    if (!identity.providerId && this.#o.enrollmentCode) frame.enrollment_code = this.#o.enrollmentCode;
    frame = await this.#o.hooks.beforeAuth.promise(frame);
    this.send(JSON.stringify(frame));
  }

  async #authenticated(assigned: string | undefined): Promise<void> {
    const { identity, log } = this.#o;
    clearTimeout(this.#handshakeTimer);
    // Checked by the frame's schema (PROTOCOL.md 2); an absent id keeps the stored one.
    if (assigned !== undefined && identity.providerId !== assigned) {
      identity.providerId = assigned;
      await this.#o.providerIds.save();
    } else if (this.#o.providerIds.owed) {
      // The id in memory is the one assigned, yet not on disk (an earlier agent's save failed).
      await this.#o.providerIds.save();
    }
    const providerId = identity.providerId;
    this.#state = 'online';
    this.#wasOnline = true;
    log.info('authenticated', { provider_id: providerId });
    await this.#o.hooks.afterAuth.promise({ providerId, coordinator: this.#o.url });
    this.#o.onOnline(providerId);
    await this.sendCapabilities(await this.#o.capabilities());
    this.#heartbeat = setInterval(() => {
      const hb: HeartbeatFrame = { type: 'heartbeat', ...this.#o.heartbeat() };
      this.send(JSON.stringify(hb));
    }, this.#o.heartbeatIntervalMs);
  }

  async sendCapabilities(frame: CapabilitiesFrame): Promise<void> {
    if (this.#state !== 'online') return;
    this.send(JSON.stringify(frame));
    this.#o.log.info('capabilities sent', { models: frame.models.length });
  }

  #protocolError(detail: string): void {
    if (this.#state === 'closed') return;
    this.#o.log.warn('protocol error', { detail });
    this.#end ??= {
      reachedAuth: this.#reachedAuth(),
      kind: 'protocol',
      detail,
      error: new UsepodError('USEPOD_PROTOCOL', `the coordinator broke the protocol: ${detail}`),
    };
    this.#ws?.close(1002, 'protocol error');
    // A peer that never answers our Close is dropped.
    setTimeout(() => this.#ws?.terminate(), 2_000).unref();
  }

  // ---- JobSink ----

  /**
   * Adaptive coalescing (issue 22, decision 0004): the first frame since the last check phase is written
   * at once, so one stream's latency is untouched; further frames of the same event-loop turn (a burst of
   * engine reads at load) are corked and leave in one `writev` every 16 frames and at the end of the turn.
   * At 64 to 256 streams that is one syscall per burst instead of one per frame.
   */
  send(frame: string | Buffer): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const socket = this.#socket;
    if (!this.#turnStarted || !socket) {
      this.#turnStarted = true;
      setImmediate(this.#endTurn);
      ws.send(frame, TEXT, this.#onWritten);
      return true;
    }
    if (this.#corked === 0) socket.cork();
    ws.send(frame, TEXT, this.#onWritten);
    if (++this.#corked >= COALESCE_FRAMES) this.#flush();
    return true;
  }

  #flush(): void {
    if (this.#corked === 0) return;
    this.#corked = 0;
    this.#socket?.uncork();
  }

  get congested(): boolean {
    const ws = this.#ws;
    return ws !== undefined && ws.bufferedAmount > this.#o.highWaterBytes;
  }

  get bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  drained(): Promise<void> {
    if (
      !this.#ws ||
      this.#ws.readyState !== WebSocket.OPEN ||
      this.#ws.bufferedAmount <= this.#o.lowWaterBytes
    ) {
      return Promise.resolve();
    }
    if (this.#drainWaiters.length === 0) this.#o.onBackpressure?.(true);
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #checkDrained(): void {
    if (this.#drainWaiters.length === 0) return;
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount > this.#o.lowWaterBytes) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    this.#o.onBackpressure?.(false);
    for (const w of waiters) w();
  }

  /** Closes the connection (agent stop): code 1000. */
  close(code = 1000, reason = ''): void {
    this.#stopRequested = true;
    const ws = this.#ws;
    if (!ws) return;
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(code, reason);
    setTimeout(() => ws.terminate(), 2_000).unref();
  }

  #teardown(): void {
    this.#state = 'closed';
    this.#flush();
    clearInterval(this.#heartbeat);
    clearTimeout(this.#handshakeTimer);
    this.#socket?.off('drain', this.#onWritten);
    // Session gone: every job on it is aborted upstream and not replayed (PROTOCOL.md 6).
    this.#o.executor.abortAll('session');
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    if (waiters.length > 0) this.#o.onBackpressure?.(false);
    for (const w of waiters) w();
  }
}
