import { EventEmitter } from 'node:events';
import type { Config } from '../config/schema.js';
import { validateConfig } from '../config/validate.js';
import { errorMessage, UsepodError } from '../errors.js';
import { loadOrCreateIdentity, type PersistedIdentity } from '../identity/identity.js';
import { IdentityLock } from '../identity/lock.js';
import { createLogger, type Logger } from '../observability/log.js';
import { AgentMetrics } from '../observability/metrics.js';
import { redactor } from '../observability/redact.js';
import { JobStats } from '../observability/stats.js';
import { type StatusServer, serveStatus } from '../observability/status-server.js';
import {
  type AgentEvent,
  createHooks,
  type PausedBy,
  type PluginHooks,
  pluginView,
  runCloseHooks,
  runEventHooks,
} from '../plugins/hooks.js';
import { PluginHost } from '../plugins/host.js';
import type { AgentPlugin } from '../plugins/plugin.js';
import type { CapabilitiesFrame } from '../protocol/frames.js';
import { advertise } from '../routing/capabilities.js';
import type { SelfTestResult } from '../routing/selftest.js';
import { engineText } from '../untrusted.js';
import { AGENT_VERSION } from '../version.js';

import { loadPlugins } from './backends.js';
import { Connector } from './connector.js';
import { PauseControl, type PauseState } from './pause.js';
import { Serving } from './serving.js';
import { readinessOf, snapshotOf, statusOf } from './status.js';
import type { AgentEvents, AgentSnapshot, AgentState, AgentStatus, CreateAgentOptions } from './types.js';

export type {
  AgentEvents,
  AgentSnapshot,
  AgentState,
  AgentStatus,
  AgentTiming,
  BackendSnapshot,
  CreateAgentOptions,
  StatusBackend,
  StatusSelfTest,
} from './types.js';

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
  /** Backends, discovery, self-tests and the executor, from start on. */
  #serving: Serving | undefined;
  readonly #pause: PauseControl;
  #connector: Connector | undefined;
  #state: AgentState = 'idle';
  #stopping: Promise<void> | undefined;
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
    this.#pause = new PauseControl({
      schedule: this.config.schedule,
      checkMs: opts.timing?.scheduleCheckMs ?? 30_000,
      now: opts.timing?.now ?? Date.now,
      onChange: (state, by) => this.#onPause(state, by),
    });
    redactor.add(this.config.coordinator.enrollment_code);
    this.metrics = new AgentMetrics(AGENT_VERSION, { inFlight: () => this.#serving?.executor.inFlight ?? 0 });
    this.#allHooks.onJobEnd.tap({ name: 'core:events', stage: -Infinity }, (o) => {
      this.metrics.job(o);
      this.emit('job', o);
    });
    this.on('state', (s) => this.metrics.state(s));
    this.on('reconnect', (r) => this.metrics.reconnect(r.after));
    const coordinator = this.config.coordinator.url;
    this.on('online', () => this.#tell({ type: 'connected', coordinator }));
    this.on('sessionEnd', (end) => {
      // A close reason is the coordinator's text: bounded and folded before it reaches a webhook.
      const why = engineText(end.error?.message ?? end.detail ?? end.reason ?? end.kind, 200);
      if (end.kind === 'auth_failed') this.#tell({ type: 'auth_refused', coordinator, why });
      else if (end.reachedAuth) this.#tell({ type: 'disconnected', coordinator, why });
    });
  }

  /** Tells `onEvent`'s observers; one that throws is logged and never reaches the caller. */
  #tell(event: AgentEvent): void {
    for (const f of runEventHooks(this.#allHooks, event))
      this.log.warn('onEvent tap failed', { tap: f.tap, event: event.type, error: f.error.message });
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

  /**
   * Loads plugins and identity, probes the backends once, and starts the
   * connection loop. Resolves before the coordinator answers; watch `state`.
   */
  async start(): Promise<void> {
    if (this.#state !== 'idle')
      throw new UsepodError('USEPOD_AGENT_STATE', `start() called in state "${this.#state}"`);
    this.#setState('starting');
    this.#startedAt = new Date();
    // Inside quiet hours from the first connection on (a pause made now holds once the executor exists).
    this.#pause.start();
    try {
      await loadPlugins(this.#host, this.config, this.#opts);
      if (this.#opts.identity) {
        this.#identity = this.#opts.identity;
      } else {
        const loaded = await loadOrCreateIdentity(this.config.identity.key_path);
        this.#lock = IdentityLock.acquire(loaded.identity.path);
        this.#identity = loaded.identity;
        if (loaded.created) this.log.info('identity created', { file: loaded.identity.path });
        if (loaded.permissionWarning) this.log.warn(loaded.permissionWarning);
      }
      const serving = new Serving({
        config: this.config,
        host: this.#host,
        hooks: this.#allHooks,
        log: this.log,
        metrics: this.metrics,
        stats: this.stats,
        timing: this.#opts.timing ?? {},
        env: this.#opts.env ?? process.env,
        journal: this.#opts.journal,
        held: () => this.#pause.state !== undefined || this.#state === 'stopping',
        onServableChange: () => void this.#resendCapabilities(),
        tell: (e) => this.#tell(e),
      });
      serving.selftest.on('result', (r) => this.emit('selftest', r));
      serving.selftest.on('withdrawn', (r, withdrawn) => this.emit('withdrawn', r, withdrawn));
      this.#serving = serving;
      // Paused before start (a timed pause carried over a restart): no job is taken from the first one.
      const paused = this.#pause.state;
      if (paused) serving.executor.pause(paused.reason);
      await serving.start();
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
      backends: this.#serving!.backends.length,
    });
    this.#connector = new Connector({
      config: this.config,
      identity: this.#identity!,
      hooks: this.#allHooks,
      executor: this.#serving!.executor,
      log: this.log.child('session'),
      timing: this.#opts.timing ?? {},
      capabilities: async () => {
        const frame = await this.capabilities();
        queueMicrotask(() => this.emit('capabilities', frame));
        return frame;
      },
      heartbeat: () => this.stats.snapshot(this.#serving?.executor.inFlight ?? 0),
      onState: (state) => this.#setState(state),
      onOnline: (providerId) => this.emit('online', providerId),
      onSessionEnd: (end) => this.emit('sessionEnd', end),
      onReconnect: (r) => this.emit('reconnect', r),
      onBackpressure: (paused) => this.emit('backpressure', paused),
    });
    this.#connector.start();
  }

  /**
   * Runs a self-test round now, through every model of every healthy backend, waiting for room when the
   * agent is busy; resolves with each pair's result (`usepod-agent selftest`).
   */
  selftest(): Promise<SelfTestResult[]> {
    if (!this.#serving)
      return Promise.reject(new UsepodError('USEPOD_AGENT_STATE', 'self-tests run once the agent started'));
    return this.#serving.selftest.run({ wait: true });
  }

  /** Each served model's last self-test. */
  selftestResults(): SelfTestResult[] {
    return this.#serving?.selftest.results() ?? [];
  }

  async #startStatusServer(): Promise<void> {
    const addr = this.config.observability.prometheus_addr;
    if (addr === '' || addr === 'off') return;
    this.#statusServer = await serveStatus(
      addr,
      this.metrics.registry,
      () => this.status(),
      this.log,
      () => this.readiness(),
    );
  }

  /** Address the status server listens on, when it runs. */
  get statusAddress(): { host: string; port: number } | undefined {
    const a = this.#statusServer?.address();
    return a ? { host: a.address, port: a.port } : undefined;
  }

  /**
   * `/readyz` for orchestrators: ready while authenticated with at least one model advertised and not
   * draining; otherwise why not, in a few words.
   */
  readiness(): { ready: boolean; reason?: string } {
    return readinessOf(this.#state, this.#pause.state, this.#lastCapabilities?.models.length ?? 0);
  }

  /** The figures of `/status`. */
  status(): AgentStatus {
    const snap = this.snapshot();
    return statusOf(snap, {
      fingerprint: this.#identity?.fingerprint,
      startedAt: this.#startedAt,
      totals: this.metrics.totals,
      heartbeat: this.stats.snapshot(snap.inFlight),
    });
  }

  /** The `capabilities` frame as it would be sent now. */
  async capabilities(): Promise<CapabilitiesFrame> {
    const frame = await advertise(
      this.config,
      this.#serving?.discovery.served() ?? [],
      this.#host.priority,
      this.#allHooks,
    );
    if (this.#pause.state) {
      // Nothing offered while paused; the prices last advertised stay for the jobs still finishing.
      const none = { ...frame, models: [] };
      this.#lastCapabilities = none;
      return none;
    }
    this.#lastCapabilities = frame;
    this.metrics.capabilities(frame.models);
    return frame;
  }

  async #resendCapabilities(): Promise<void> {
    if (!this.#connector?.session?.online) return;
    try {
      const frame = await this.capabilities();
      await this.#connector?.session?.sendCapabilities(frame);
      this.emit('capabilities', frame);
    } catch (err) {
      this.log.error('capabilities update failed', { error: errorMessage(err) });
    }
  }

  /** Re-probes every backend now (and re-advertises if anything changed). */
  async refresh(): Promise<void> {
    await this.#serving?.discovery.probeAll();
  }

  /**
   * Graceful drain: refuse new jobs, let jobs in flight finish for up to
   * `graceMs` (default `limits.drain_timeout_s`), end the rest with
   * `job_error`, close the socket with 1000, run `onClose` taps.
   */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    // No new session once a drain has begun: a coordinator that closes meanwhile is not redialled.
    this.#connector?.halt();
    this.#stopping ??= this.#stop(opts.graceMs ?? this.config.limits.drain_timeout_s * 1000);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<void> {
    const wasRunning = this.#state !== 'idle' && this.#state !== 'stopped';
    this.#setState('stopping');
    await this.#serving?.drain(graceMs, this.log);
    await this.#connector?.stop();
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
    this.#pause.stop();
    this.#lock?.release();
    await this.#statusServer?.close();
    await this.#serving?.release();
  }

  snapshot(): AgentSnapshot {
    return snapshotOf({
      state: this.#state,
      coordinator: this.config.coordinator.url,
      identity: this.#identity,
      startedAt: this.#startedAt,
      inFlight: this.#serving?.executor.inFlight ?? 0,
      outboundBytes: this.#connector?.session?.bufferedAmount ?? 0,
      backends: this.#serving?.discovery.states ?? [],
      models: this.#lastCapabilities?.models ?? [],
      paused: this.#pauseSnapshot(),
      selftest: this.#serving?.selftest,
    });
  }

  /**
   * The owner takes the machine back (issue 19): the coordinator is told no model is served, a job that
   * still arrives is turned away (`out_of_capacity`, recorded as `paused`), jobs in flight finish.
   * `until` resumes by itself. Pausing again replaces the reason and the time.
   */
  pause(opts: { reason?: string; until?: Date; by?: PausedBy } = {}): void {
    this.#pause.pause(opts);
  }

  resume(opts: { by?: PausedBy } = {}): void {
    this.#pause.resume(opts);
  }

  #pauseSnapshot(): AgentSnapshot['paused'] {
    const p = this.#pause.state;
    return p && { reason: p.reason, until: p.until?.toISOString() };
  }

  /** What a pause or a resume does to the agent's parts and what it tells. */
  #onPause(state: PauseState | undefined, by: PausedBy): void {
    if (state) {
      this.#serving?.executor.pause(state.reason);
      this.log.info('paused', {
        reason: state.reason,
        ...(state.until ? { until: state.until.toISOString() } : {}),
      });
      this.emit('paused', { reason: state.reason, until: state.until });
      this.#tell({ type: 'paused', by, reason: state.reason, until: state.until?.toISOString() });
    } else {
      this.#serving?.executor.resume();
      this.log.info('resumed');
      this.emit('paused', undefined);
      this.#tell({ type: 'resumed', by });
    }
    this.metrics.paused(state !== undefined);
    void this.#resendCapabilities();
  }
}

/** Creates an agent; call `start()` to connect. */
export function createAgent(opts: CreateAgentOptions): Agent {
  return new Agent(opts);
}
