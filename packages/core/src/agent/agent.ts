import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/backend.js';
import type { Config, ConfigInput } from '../config/schema.js';
import { validateConfig } from '../config/validate.js';
import { errorMessage, UsepodError } from '../errors.js';
import { loadOrCreateIdentity, type PersistedIdentity } from '../identity/identity.js';
import { IdentityLock } from '../identity/lock.js';
import { createLogger, type Logger } from '../observability/log.js';
import { AgentMetrics } from '../observability/metrics.js';
import { redactor } from '../observability/redact.js';
import { type HeartbeatStats, JobStats } from '../observability/stats.js';
import { StatusServer } from '../observability/status-server.js';
import {
  createHooks,
  type JobOutcome,
  type PluginHooks,
  pluginView,
  runCloseHooks,
} from '../plugins/hooks.js';
import { PluginHost } from '../plugins/host.js';
import { checkBackends } from '../plugins/kinds.js';
import { loadPluginForKind } from '../plugins/loader.js';
import { type AgentPlugin, type PluginFactory, pluginFromModule, validatePlugin } from '../plugins/plugin.js';
import type { CapabilitiesFrame, CapabilityModel } from '../protocol/frames.js';
import { Session, type SessionEnd } from '../protocol/session.js';
import { Executor } from '../relay/executor.js';
import { TokenBudget } from '../relay/token-budget.js';
import { buildModelEntries, capabilitiesFrame, sortEntries } from '../routing/capabilities.js';
import { Discovery } from '../routing/discovery.js';
import { AGENT_VERSION } from '../version.js';
import { Backoff } from './backoff.js';

export type AgentState = 'idle' | 'starting' | 'connecting' | 'online' | 'backoff' | 'stopping' | 'stopped';

export interface AgentTiming {
  /** Heartbeat period; PROTOCOL.md fixes it at 15 s. Tests shorten it. */
  heartbeatIntervalMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  handshakeTimeoutMs?: number;
  /** Per-tap bound for `onClose`. */
  closeHookTimeoutMs?: number;
  /** A job whose output cannot be delivered this long ends with `job_error`. */
  stallTimeoutMs?: number;
  /** Overrides `[discovery] interval_s`. */
  discoveryIntervalMs?: number;
  /** Outbound buffer above which relays pause reading their engines (default 4 MiB). */
  highWaterBytes?: number;
  /** Outbound buffer under which paused relays resume (default 1 MiB). */
  lowWaterBytes?: number;
}

export interface CreateAgentOptions {
  /** A validated config, or a plain object in the `agent.toml` shape. */
  config: Config | ConfigInput;
  /** Plugins passed directly (objects or definePlugin factories); kinds they register need no package. */
  plugins?: (AgentPlugin | PluginFactory<void>)[];
  /** Use this identity instead of the file at `identity.key_path`. */
  identity?: PersistedIdentity;
  /** Accept a ws:// coordinator URL (`--allow-insecure`). */
  allowInsecure?: boolean;
  logger?: Logger;
  /** Folders searched for plugin packages by kind. */
  pluginSearchRoots?: string[];
  timing?: AgentTiming;
  /** Environment read for `api_key_env` (default `process.env`). */
  env?: Record<string, string | undefined>;
}

export interface BackendSnapshot {
  label: string;
  kind: string;
  url: string | undefined;
  healthy: boolean;
  detail: string | undefined;
  inFlight: number;
  models: { id: string; contextWindow?: number }[];
}

export interface AgentSnapshot {
  state: AgentState;
  coordinator: string;
  providerId: string | undefined;
  publicKey: string | undefined;
  agentVersion: string;
  startedAt: string | undefined;
  inFlight: number;
  /** Bytes waiting in the coordinator socket's send buffer. */
  outboundBytes: number;
  backends: BackendSnapshot[];
  models: CapabilityModel[];
}

/** What `/status` and `usepod-agent status` show. */
export interface AgentStatus {
  state: AgentState;
  connected: boolean;
  coordinator: string;
  provider_id: string | null;
  public_key: string | null;
  fingerprint: string | null;
  agent_version: string;
  started_at: string | null;
  uptime_s: number;
  backends: BackendSnapshot[];
  models: CapabilityModel[];
  jobs: { in_flight: number; served: number; failed: number; cancelled: number };
  tokens: { input: number; output: number };
  relayed_bytes: number;
  heartbeat: HeartbeatStats;
  earnings: { micro_usdc: number; usdc: number };
}

export interface AgentEvents {
  state: [AgentState];
  online: [string | undefined];
  capabilities: [CapabilitiesFrame];
  job: [JobOutcome];
  sessionEnd: [SessionEnd];
  /** The coordinator socket crossed the high-water mark (true) or drained below the low one (false). */
  backpressure: [boolean];
  /** A reconnect was scheduled after `waitMs`, following `preAuthFailures` failures in a row. */
  reconnect: [{ waitMs: number; preAuthFailures: number; after: SessionEnd['kind'] }];
}

/**
 * The agent: loads plugins and identity, probes backends, keeps one session with
 * the coordinator open (reconnecting forever), and serves jobs until `stop()`.
 */
export class Agent extends EventEmitter<AgentEvents> {
  readonly config: Config;
  readonly hooks: PluginHooks;
  readonly log: Logger;
  readonly agentVersion = AGENT_VERSION;
  readonly stats = new JobStats();
  readonly metrics: AgentMetrics;
  #statusServer: StatusServer | undefined;
  readonly #opts: CreateAgentOptions;
  readonly #allHooks = createHooks();
  readonly #host: PluginHost;
  #identity: PersistedIdentity | undefined;
  #backends: Backend[] = [];
  #discovery: Discovery | undefined;
  #executor: Executor | undefined;
  #session: Session | undefined;
  #state: AgentState = 'idle';
  #loop: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #wake = new AbortController();
  #lastCapabilities: CapabilitiesFrame | undefined;
  #startedAt: Date | undefined;
  /** One identity, one agent: held from start to stop (identity/lock.ts). */
  #lock: IdentityLock | undefined;

  constructor(opts: CreateAgentOptions) {
    super();
    this.#opts = opts;
    // Validated again even when it came from loadConfig(): embedding code may hand over any object.
    const source = (opts.config as Partial<Config>).source;
    this.config = validateConfig(opts.config, {
      allowInsecure: opts.allowInsecure ?? false,
      ...(source ? { source } : {}),
    });
    this.log = opts.logger ?? createLogger('agent');
    this.#host = new PluginHost({ config: this.config, log: this.log, hooks: this.#allHooks });
    this.hooks = pluginView(this.#allHooks, 'host');
    redactor.add(this.config.coordinator.enrollment_code);
    this.metrics = new AgentMetrics(AGENT_VERSION, { inFlight: () => this.#executor?.inFlight ?? 0 });
    this.#allHooks.onJobEnd.tap({ name: 'core:events', stage: -Infinity }, (o) => {
      this.metrics.job(o);
      this.emit('job', o);
    });
    this.on('state', (s) => this.metrics.state(s));
    this.on('reconnect', (r) => this.metrics.reconnect(r.after));
  }

  get state(): AgentState {
    return this.#state;
  }

  get identity(): PersistedIdentity | undefined {
    return this.#identity;
  }

  get providerId(): string | undefined {
    return this.#identity?.providerId;
  }

  /** Plugins applied, in order. */
  get plugins(): readonly AgentPlugin[] {
    return this.#host.plugins;
  }

  #setState(s: AgentState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.emit('state', s);
  }

  /** Resolves when the agent reaches `state` (or at once if it is there). */
  waitFor(state: AgentState, timeoutMs = 30_000): Promise<void> {
    if (this.#state === state) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('state', on);
        reject(
          new UsepodError('USEPOD_AGENT_STATE', `agent did not reach "${state}" within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const on = (s: AgentState) => {
        if (s !== state) return;
        clearTimeout(timer);
        this.off('state', on);
        resolve();
      };
      this.on('state', on);
    });
  }

  async #loadPlugins(): Promise<void> {
    for (const p of this.#opts.plugins ?? []) {
      await this.#host.apply(
        typeof p === 'function' ? pluginFromModule({ default: p }, 'plugin') : validatePlugin(p, 'plugin'),
      );
    }
    for (const entry of this.config.backends) {
      if (this.#host.kinds.has(entry.kind)) continue;
      const plugin = await loadPluginForKind(entry.kind, {
        ...(this.#opts.pluginSearchRoots ? { searchRoots: this.#opts.pluginSearchRoots } : {}),
      });
      await this.#host.apply(plugin);
      if (!this.#host.kinds.has(entry.kind)) {
        throw new UsepodError(
          'USEPOD_PLUGIN_INVALID',
          `plugin "${plugin.name}" was loaded for kind "${entry.kind}" but did not register it`,
          { user: true, plugin: plugin.name },
        );
      }
    }
  }

  /** One backend per entry, as its kind's plugin declared it (options parsed, requirements checked). */
  #createBackends(): Backend[] {
    const env = this.#opts.env ?? process.env;
    const out: Backend[] = [];
    checkBackends(this.config, this.#host.kinds).forEach((entry, i) => {
      let apiKey: string | undefined;
      if (entry.api_key_env) {
        apiKey = env[entry.api_key_env];
        if (!apiKey) {
          this.log.warn('backend skipped: its API key variable is not set', {
            backend: `backends[${i}]`,
            kind: entry.kind,
            api_key_env: entry.api_key_env,
          });
          return;
        }
        redactor.add(apiKey);
      }
      const kind = this.#host.kinds.get(entry.kind)!;
      out.push(kind.create(entry, { apiKey, log: this.log.child(`backend:${entry.kind}`) }));
    });
    return out;
  }

  /**
   * Loads plugins and identity, probes the backends once, and starts the
   * connection loop. Resolves before the coordinator answers; watch `state`.
   */
  async start(): Promise<void> {
    if (this.#state !== 'idle')
      throw new UsepodError('USEPOD_AGENT_STATE', `start() called in state "${this.#state}"`);
    this.#setState('starting');
    this.#startedAt = new Date();
    try {
      await this.#loadPlugins();
      if (this.#opts.identity) {
        this.#identity = this.#opts.identity;
      } else {
        const loaded = await loadOrCreateIdentity(this.config.identity.key_path);
        this.#lock = IdentityLock.acquire(loaded.identity.path);
        this.#identity = loaded.identity;
        if (loaded.created) this.log.info('identity created', { file: loaded.identity.path });
        if (loaded.permissionWarning) this.log.warn(loaded.permissionWarning);
      }
      this.#backends = this.#createBackends();
      const timing = this.#opts.timing ?? {};
      const discovery = new Discovery({
        backends: this.#backends,
        priority: this.#host.priority,
        intervalMs: timing.discoveryIntervalMs ?? this.config.discovery.interval_s * 1000,
        log: this.log.child('discovery'),
        onChange: () => {
          this.#allHooks.onDiscovery.call(discovery.models());
          void this.#resendCapabilities();
        },
        onProbed: (states) => {
          for (const s of states) this.metrics.backend(s.backend.label, s.backend.kind, s.status);
        },
      });
      this.#discovery = discovery;
      this.#executor = new Executor({
        hooks: this.#allHooks,
        log: this.log.child('executor'),
        stats: this.stats,
        router: discovery,
        maxConcurrent: this.config.limits.max_concurrent,
        maxRequestBytes: this.config.limits.max_request_bytes,
        budget: new TokenBudget(this.config.limits.max_tokens_per_minute),
        ...(timing.stallTimeoutMs ? { stallTimeoutMs: timing.stallTimeoutMs } : {}),
      });
      await this.#discovery.start();
      await this.#startStatusServer();
    } catch (err) {
      await this.#release();
      this.#setState('stopped');
      throw err;
    }
    this.log.info('agent started', {
      version: AGENT_VERSION,
      fingerprint: this.#identity.fingerprint,
      coordinator: this.config.coordinator.url,
      backends: this.#backends.length,
    });
    this.#loop = this.#connectLoop();
  }

  async #startStatusServer(): Promise<void> {
    const addr = this.config.observability.prometheus_addr;
    if (addr === '' || addr === 'off') return;
    const server = new StatusServer({ addr, registry: this.metrics.registry, status: () => this.status() });
    try {
      const bound = await server.listen();
      this.#statusServer = server;
      const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
      this.log.info('metrics and status served', { url: `http://${host}:${bound.port}/metrics` });
      if (!isLoopback(bound.address)) {
        this.log.warn(
          'metrics and status are served beyond this machine: anyone who reaches the port sees models, earnings and the provider id; set observability.prometheus_addr to 127.0.0.1:PORT unless that is intended',
          { addr },
        );
      }
    } catch (err) {
      // The agent keeps serving jobs without its local status page.
      this.log.warn('metrics server not started; change observability.prometheus_addr or set it to "off"', {
        addr,
        error: errorMessage(err),
      });
    }
  }

  /** Address the status server listens on, when it runs. */
  get statusAddress(): { host: string; port: number } | undefined {
    const a = this.#statusServer?.address();
    return a ? { host: a.address, port: a.port } : undefined;
  }

  /** The figures of `/status`. */
  status(): AgentStatus {
    const snap = this.snapshot();
    const t = this.metrics.totals;
    return {
      state: snap.state,
      connected: snap.state === 'online',
      coordinator: snap.coordinator,
      provider_id: snap.providerId ?? null,
      public_key: snap.publicKey ?? null,
      fingerprint: this.#identity?.fingerprint ?? null,
      agent_version: AGENT_VERSION,
      started_at: snap.startedAt ?? null,
      uptime_s: this.#startedAt ? Math.round((Date.now() - this.#startedAt.getTime()) / 1000) : 0,
      backends: snap.backends,
      models: snap.models,
      jobs: { in_flight: snap.inFlight, served: t.served, failed: t.failed, cancelled: t.cancelled },
      tokens: { input: t.inputTokens, output: t.outputTokens },
      relayed_bytes: t.bytes,
      heartbeat: this.stats.snapshot(snap.inFlight),
      earnings: { micro_usdc: Math.round(t.earningsMicro), usdc: Math.round(t.earningsMicro) / 1_000_000 },
    };
  }

  /** The `capabilities` frame as it would be sent now. */
  async capabilities(): Promise<CapabilitiesFrame> {
    const served = this.#discovery?.served() ?? [];
    const base = buildModelEntries(this.config, served, this.#host.priority);
    const adjusted = await this.#allHooks.onCapabilities.promise(base);
    // Whatever the taps did, the wire rules hold: one entry per id, sorted, no zero prices.
    const seen = new Set<string>();
    const models = sortEntries(
      adjusted.filter((m) => {
        if (m.input_per_1m <= 0 || m.output_per_1m <= 0 || seen.has(m.model_id)) return false;
        seen.add(m.model_id);
        return true;
      }),
    );
    const frame = capabilitiesFrame(this.config, models, AGENT_VERSION);
    this.#lastCapabilities = frame;
    this.metrics.capabilities(models);
    return frame;
  }

  async #resendCapabilities(): Promise<void> {
    if (!this.#session?.online) return;
    try {
      const frame = await this.capabilities();
      await this.#session?.sendCapabilities(frame);
      this.emit('capabilities', frame);
    } catch (err) {
      this.log.error('capabilities update failed', { error: errorMessage(err) });
    }
  }

  /** Re-probes every backend now (and re-advertises if anything changed). */
  async refresh(): Promise<void> {
    await this.#discovery?.probeAll();
  }

  async #connectLoop(): Promise<void> {
    const timing = this.#opts.timing ?? {};
    const backoff = new Backoff({
      ...(timing.backoffInitialMs ? { initialMs: timing.backoffInitialMs } : {}),
      ...(timing.backoffMaxMs ? { maxMs: timing.backoffMaxMs } : {}),
    });
    let preAuthFailures = 0;
    const log = this.log.child('session');
    const insecure = new URL(this.config.coordinator.url).protocol === 'ws:';
    while (!this.#stopping) {
      this.#setState('connecting');
      if (insecure) log.warn('coordinator connection is not encrypted (ws://, allowed by --allow-insecure)');
      const session = new Session({
        url: this.config.coordinator.url,
        identity: this.#identity!,
        enrollmentCode: this.config.coordinator.enrollment_code,
        agentVersion: AGENT_VERSION,
        hooks: this.#allHooks,
        log,
        executor: this.#executor!,
        capabilities: async () => {
          const frame = await this.capabilities();
          queueMicrotask(() => this.emit('capabilities', frame));
          return frame;
        },
        heartbeat: () => this.stats.snapshot(this.#executor?.inFlight ?? 0),
        heartbeatIntervalMs: timing.heartbeatIntervalMs ?? 15_000,
        handshakeTimeoutMs: timing.handshakeTimeoutMs ?? 15_000,
        maxInboundBytes: Math.max(this.config.limits.max_request_bytes * 2, 1024 * 1024),
        highWaterBytes: timing.highWaterBytes ?? 4 * 1024 * 1024,
        lowWaterBytes: timing.lowWaterBytes ?? 1024 * 1024,
        onBackpressure: (paused) => this.emit('backpressure', paused),
        onOnline: (providerId) => {
          this.#setState('online');
          this.emit('online', providerId);
        },
      });
      this.#session = session;
      const end = await session.run();
      this.#session = undefined;
      this.emit('sessionEnd', end);
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
      if (this.#stopping) break;
      if (end.reachedAuth) {
        backoff.reset();
        preAuthFailures = 0;
      } else if (++preAuthFailures === 10) {
        log.error('10 consecutive connection attempts failed before authentication; still retrying', fields);
      }
      const wait = backoff.next();
      this.emit('reconnect', { waitMs: wait, preAuthFailures, after: end.kind });
      this.#setState('backoff');
      log.info('reconnecting', { in_ms: wait, after: end.kind });
      await sleep(wait, undefined, { signal: this.#wake.signal }).catch(() => {});
    }
  }

  /**
   * Graceful drain: refuse new jobs, let jobs in flight finish for up to
   * `graceMs` (default `limits.drain_timeout_s`), end the rest with
   * `job_error`, close the socket with 1000, run `onClose` taps.
   */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.#stopping ??= this.#stop(opts.graceMs ?? this.config.limits.drain_timeout_s * 1000);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<void> {
    const wasRunning = this.#state !== 'idle' && this.#state !== 'stopped';
    this.#setState('stopping');
    const ex = this.#executor;
    if (ex) {
      ex.stopAccepting();
      if (ex.inFlight > 0 && graceMs > 0) {
        this.log.info('draining jobs in flight', { jobs: ex.inFlight, grace_ms: graceMs });
        const timer = new AbortController();
        await Promise.race([ex.idle(), sleep(graceMs, undefined, { signal: timer.signal }).catch(() => {})]);
        timer.abort();
      }
      ex.abortAll('shutdown');
      await ex.idle();
    }
    this.#session?.close(1000);
    this.#wake.abort();
    await this.#loop;
    const failures = await runCloseHooks(
      this.#allHooks,
      { reason: 'stop' },
      this.#opts.timing?.closeHookTimeoutMs ?? 5_000,
    );
    for (const f of failures) this.log.warn('onClose tap failed', { tap: f.tap, error: f.error.message });
    await this.#release();
    this.#setState('stopped');
    if (wasRunning) this.log.info('agent stopped');
  }

  async #release(): Promise<void> {
    this.#lock?.release();
    await this.#statusServer?.close();
    await this.#discovery?.stop();
    await Promise.all(this.#backends.map((b) => b.close().catch(() => {})));
  }

  snapshot(): AgentSnapshot {
    return {
      state: this.#state,
      coordinator: this.config.coordinator.url,
      providerId: this.#identity?.providerId,
      publicKey: this.#identity?.publicKey,
      agentVersion: AGENT_VERSION,
      startedAt: this.#startedAt?.toISOString(),
      inFlight: this.#executor?.inFlight ?? 0,
      outboundBytes: this.#session?.bufferedAmount ?? 0,
      backends: (this.#discovery?.states ?? []).map((s) => ({
        label: s.backend.label,
        kind: s.backend.kind,
        url: s.backend.url,
        healthy: s.status?.healthy ?? false,
        detail: s.status?.detail,
        inFlight: s.inFlight,
        models: (s.status?.models ?? []).map((m) =>
          m.contextWindow ? { id: m.id, contextWindow: m.contextWindow } : { id: m.id },
        ),
      })),
      models: this.#lastCapabilities?.models ?? [],
    };
  }
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** Creates an agent; call `start()` to connect. */
export function createAgent(opts: CreateAgentOptions): Agent {
  return new Agent(opts);
}
