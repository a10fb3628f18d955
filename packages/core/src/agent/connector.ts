import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/schema.js';
import type { PersistedIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { HeartbeatStats } from '../observability/stats.js';
import type { AgentEvent, AgentHooks } from '../plugins/hooks.js';
import type { CapabilitiesFrame } from '../protocol/frames.js';
import { ProviderIdSaver } from '../protocol/provider-id.js';
import { Session, type SessionEnd } from '../protocol/session.js';
import type { Executor } from '../relay/executor.js';
import { engineText } from '../untrusted.js';
import { AGENT_VERSION } from '../version.js';
import { Backoff } from './backoff.js';
import type { AgentTiming } from './types.js';

/**
 * The reconnect loop of PROTOCOL.md 6: one session at a time, forever, with a backoff that escalates on
 * failures before authentication and resets after a session that reached it. Halted by the agent's stop.
 */
export interface ConnectorOptions {
  config: Config;
  identity: PersistedIdentity;
  hooks: AgentHooks;
  executor: Executor;
  log: Logger;
  timing: AgentTiming;
  capabilities(): Promise<CapabilitiesFrame>;
  heartbeat(): HeartbeatStats;
  onState(state: 'connecting' | 'online' | 'backoff'): void;
  /** What the connection does, on the agent's observation stream. */
  tell(event: AgentEvent): void;
}

export class Connector {
  readonly #o: ConnectorOptions;
  readonly #wake = new AbortController();
  /** One for every session of this agent: its retries end with `stop()`. */
  readonly #providerIds: ProviderIdSaver;
  #halted = false;
  #session: Session | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: ConnectorOptions) {
    this.#o = opts;
    const retryMs = opts.timing.providerIdRetryMs;
    this.#providerIds = new ProviderIdSaver(opts.identity, opts.log, retryMs ? { retryMs } : {});
  }

  /** A session's end on the stream; the coordinator's text bounded and folded before a webhook sees it. */
  #told(end: SessionEnd): string {
    const coordinator = this.#o.config.coordinator.url;
    const why = engineText(end.error?.message ?? end.detail ?? end.reason ?? end.kind, 200);
    if (end.kind === 'auth_failed') this.#o.tell({ type: 'auth_refused', coordinator, why });
    else if (end.reachedAuth) this.#o.tell({ type: 'disconnected', coordinator, why, kind: end.kind });
    return why;
  }

  /** The live session, if any. */
  get session(): Session | undefined {
    return this.#session;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** No new session from now on (a drain has begun); the current one stays open. */
  halt(): void {
    this.#halted = true;
  }

  /** Closes the current session with 1000, ends the loop and the provider id's retries. */
  async stop(): Promise<void> {
    this.#halted = true;
    this.#session?.close(1000);
    this.#wake.abort();
    await this.#loop;
    // Before the agent releases its identity lock: a write under way ends, none starts.
    await this.#providerIds.close();
  }

  async #run(): Promise<void> {
    const { timing, config } = this.#o;
    const backoff = new Backoff({
      ...(timing.backoffInitialMs ? { initialMs: timing.backoffInitialMs } : {}),
      ...(timing.backoffMaxMs ? { maxMs: timing.backoffMaxMs } : {}),
    });
    let preAuthFailures = 0;
    const log = this.#o.log;
    const insecure = new URL(config.coordinator.url).protocol === 'ws:';
    while (!this.#halted) {
      this.#o.onState('connecting');
      if (insecure) log.warn('coordinator connection is not encrypted (ws://, allowed by --allow-insecure)');
      const session = new Session({
        url: config.coordinator.url,
        identity: this.#o.identity,
        providerIds: this.#providerIds,
        enrollmentCode: config.coordinator.enrollment_code,
        agentVersion: AGENT_VERSION,
        hooks: this.#o.hooks,
        log,
        executor: this.#o.executor,
        capabilities: () => this.#o.capabilities(),
        heartbeat: () => this.#o.heartbeat(),
        heartbeatIntervalMs: timing.heartbeatIntervalMs ?? 15_000,
        handshakeTimeoutMs: timing.handshakeTimeoutMs ?? 15_000,
        maxInboundBytes: Math.max(config.limits.max_request_bytes * 2, 1024 * 1024),
        highWaterBytes: timing.highWaterBytes ?? 4 * 1024 * 1024,
        lowWaterBytes: timing.lowWaterBytes ?? 1024 * 1024,
        onBackpressure: (congested) => this.#o.tell({ type: 'backpressure', congested }),
        onOnline: (providerId) => {
          this.#o.onState('online');
          this.#o.tell({ type: 'connected', coordinator: this.#o.config.coordinator.url, providerId });
        },
      });
      this.#session = session;
      const end = await session.run();
      this.#session = undefined;
      const why = this.#told(end);
      const fields = {
        kind: end.kind,
        code: end.code,
        reason: end.reason,
        detail: end.detail,
        error_code: end.error?.code,
      };
      if (end.kind === 'stopped') break;
      if (end.kind === 'deploy' || end.kind === 'operator' || end.kind === 'graceful')
        log.info('session closed', fields);
      else log.warn('session ended unexpectedly', fields);
      if (this.#halted) break;
      if (end.reachedAuth) {
        backoff.reset();
        preAuthFailures = 0;
      } else if (++preAuthFailures === 10) {
        log.error('10 consecutive connection attempts failed before authentication; still retrying', fields);
      }
      const wait = backoff.next();
      this.#o.tell({ type: 'reconnect', waitMs: wait, preAuthFailures, after: end.kind, why });
      this.#o.onState('backoff');
      log.info('reconnecting', { in_ms: wait, after: end.kind });
      await sleep(wait, undefined, { signal: this.#wake.signal }).catch(() => {});
    }
  }
}
