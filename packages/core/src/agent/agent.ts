import { EventEmitter, on } from 'node:events';
import type { Config } from '../config/schema.js';
import { validateConfig } from '../config/validate.js';
import { UsepodError } from '../errors.js';
import { loadOrCreateIdentity, type PersistedIdentity } from '../identity/identity.js';
import { IdentityLock } from '../identity/lock.js';
import { createLogger, type Logger } from '../observability/log.js';
import { AgentMetrics } from '../observability/metrics.js';
import { redactor } from '../observability/redact.js';
import { JobStats } from '../observability/stats.js';
import { type StatusServer, serveStatus } from '../observability/status-server.js';
import {
  type AgentEvent,
  type AgentState,
  createHooks,
  type EventOf,
  runCloseHooks,
  runEventHooks,
  runStartHooks,
} from '../plugins/hooks.js';
import { type HoldTarget, PluginHost } from '../plugins/host.js';
import type { RegisteredKind } from '../plugins/kinds.js';
import type {
  AgentAccess,
  AgentBackend,
  AgentPlugin,
  DoctorFacts,
  DoctorFinding,
  Hold,
  JobInFlight,
} from '../plugins/plugin.js';
import type { CapabilitiesFrame } from '../protocol/frames.js';
import type { SelfTestResult } from '../routing/selftest.js';
import { AGENT_VERSION } from '../version.js';

import { loadPlugins } from './backends.js';
import { Connector } from './connector.js';
import { Holds, MAX_HOLD_MS } from './holds.js';
import { Offer } from './offer.js';
import { QuietHours } from './quiet-hours.js';
import { Serving, seedFromJournal } from './serving.js';
import { readinessOf, snapshotOf, statusOf } from './status.js';
import type { AgentSnapshot, AgentStatus, CreateAgentOptions } from './types.js';

/** `agent.on(type, (event) => ...)`: each event of the observation stream under its type. */
export type AgentEvents = { [T in AgentEvent['type']]: [EventOf<T>] };

export type {
  AgentSnapshot,
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
 * What happens to it is one stream of events (`agent.on(type)`, `onEvent` for plugins).
 */
export class Agent extends EventEmitter<AgentEvents> {
  /** The validated config, frozen to the last array: read it; to change it, change the file and restart. */
  readonly config: Config;
  readonly log: Logger;
  readonly agentVersion = AGENT_VERSION;
  readonly #stats = new JobStats();
  readonly #metrics: AgentMetrics;
  #statusServer: StatusServer | undefined;
  readonly #opts: CreateAgentOptions;
  readonly #allHooks = createHooks();
  readonly #host: PluginHost;
  #identity: PersistedIdentity | undefined;
  /** Backends, discovery, self-tests and the executor, from start on. */
  #serving: Serving | undefined;
  readonly #holds: Holds;
  readonly #quiet: QuietHours;
  #connector: Connector | undefined;
  #state: AgentState = 'idle';
  #loading: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #offer: Offer;
  #startedAt: Date | undefined;
  /** One identity, one agent: held from start to stop (identity/lock.ts). */
  #lock: IdentityLock | undefined;

  constructor(opts: CreateAgentOptions) {
    super();
    this.#opts = opts;
    // Validated again even when it came from loadConfig(): embedding code may hand over any object.
    const source = (opts.config as Partial<Config>).source;
    this.config = frozen(
      validateConfig(opts.config, {
        allowInsecure: opts.allowInsecure ?? false,
        ...(source ? { source } : {}),
      }),
    );
    this.log = opts.logger ?? createLogger('agent');
    this.#holds = new Holds({ onChange: (c) => this.#onHold(c) });
    this.#quiet = new QuietHours({
      holds: this.#holds,
      schedule: this.config.schedule,
      checkMs: opts.timing?.scheduleCheckMs ?? 30_000,
      now: opts.timing?.now ?? Date.now,
    });
    const metrics = new AgentMetrics(AGENT_VERSION, {
      inFlight: () => this.#serving?.executor.inFlight ?? 0,
    });
    this.#metrics = metrics;
    const access = accessOf(
      this,
      this.#holds,
      metrics,
      (e) => this.#tell(e),
      () => this.#host.kinds,
    );
    this.#offer = new Offer({
      config: this.config,
      hooks: this.#allHooks,
      metrics,
      log: this.log,
      priority: (kind) => this.#host.priority(kind),
      served: () => this.#serving?.discovery.served() ?? [],
      held: () => this.#holds.paused,
      session: () => this.#connector?.session,
      tell: (e) => this.#tell(e),
    });
    this.#host = new PluginHost({
      config: this.config,
      log: this.log,
      hooks: this.#allHooks,
      agent: access,
      loadMs: opts.timing?.pluginLoadMs,
    });
    redactor.add(this.config.coordinator.enrollment_code);
  }

  /**
   * Publishes a fact once: to `onEvent` taps (each isolated: one that throws is logged and never reaches
   * the caller), then to `agent.on(type)` listeners, in the same shape.
   */
  #tell(event: AgentEvent): void {
    this.#metrics.event(event);
    for (const f of runEventHooks(this.#allHooks, event))
      this.log.warn('onEvent tap failed', { tap: f.tap, event: event.type, error: f.error.message });
    (this.emit as (t: string, e: AgentEvent) => boolean)(event.type, event);
  }

  get state(): AgentState {
    return this.#state;
  }

  /** Who this agent is, to read: the key signs for the session only (no `sign`, no `save` here). */
  get identity(): AgentIdentity | undefined {
    const id = this.#identity;
    if (!id) return undefined;
    const { path, publicKey, created, fingerprint, providerId } = id;
    return Object.freeze({ path, publicKey, created, fingerprint, providerId });
  }

  get providerId(): string | undefined {
    return this.#identity?.providerId;
  }

  /** Plugins applied, in order (a copy). */
  get plugins(): readonly AgentPlugin[] {
    return [...this.#host.plugins];
  }

  /** The backend kinds the applied plugins registered, by kind (a copy). */
  get kinds(): ReadonlyMap<string, RegisteredKind> {
    return new Map(this.#host.kinds);
  }

  /** The plugin that claimed each plugin section of the config. */
  get sections(): Record<string, string> {
    const f = this.#host.features;
    return Object.fromEntries(f.pluginSections().map((s) => [s, f.claimedBy(s) ?? '']));
  }

  #setState(s: AgentState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#tell({ type: 'state', state: s });
  }

  /** Resolves when the agent reaches `state` (or at once if it is there). */
  async waitFor(state: AgentState, timeoutMs = 30_000): Promise<void> {
    if (this.#state === state) return;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      for await (const [e] of on(this, 'state', { signal }))
        if ((e as EventOf<'state'>).state === state) return;
    } catch {
      throw new UsepodError('USEPOD_AGENT_STATE', `agent did not reach "${state}" within ${timeoutMs} ms`);
    }
  }

  /**
   * Loads and applies every plugin the config needs (given, by kind, by section, by default) and checks
   * what they were given: sections and backend options, each mistake at `file:line:column`. Opens no
   * file, socket or connection: `validate` is this, and `start()` begins with it.
   */
  load(): Promise<void> {
    this.#loading ??= loadPlugins(this.#host, this.config, this.#opts);
    return this.#loading;
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
      await this.load();
      // Inside quiet hours from the first connection on (the executor takes the hold once it exists).
      this.#quiet.start();
      ({ identity: this.#identity, lock: this.#lock } = await openIdentity(
        this.config.identity.key_path,
        this.#opts.identity,
        this.log,
      ));
      const journal = this.#host.features.journal;
      // The ledger's totals come from its thread, which takes ~0.1 s to start: asked now, awaited once the
      // engines are probed (both wait on others; decision 0008, tenth pass), before the status server
      // shows the counters. It never rejects: a journal without totals starts the counters at zero.
      const seeded = seedFromJournal(journal, this.#metrics, this.log, this.#startedAt.getTime());
      const serving = new Serving({
        config: this.config,
        host: this.#host,
        hooks: this.#allHooks,
        log: this.log,
        metrics: this.#metrics,
        stats: this.#stats,
        timing: this.#opts.timing ?? {},
        env: this.#opts.env ?? process.env,
        journal,
        held: () => this.#holds.paused || this.#state === 'stopping',
        backendHeld: (label) => this.#holds.backendHeld(label),
        onServableChange: () => void this.#offer.resend(),
        tell: (e) => this.#tell(e),
      });
      this.#serving = serving;
      // Held before start (the owner's pause restored, quiet hours): no job is taken from the first one.
      const first = this.#holds.first();
      if (first) serving.executor.pause(first.reason);
      this.#metrics.paused(this.#holds.paused);
      await serving.start();
      await seeded;
      const addr = this.config.observability.prometheus_addr;
      if (addr !== '' && addr !== 'off') {
        const status = () => this.status();
        this.#statusServer = await serveStatus({
          addr,
          registry: this.#metrics.registry,
          status,
          log: this.log,
          readiness: () => this.readiness(),
          routes: this.#host.features.routes,
          keyPath: this.config.identity.key_path,
          tokenFile: this.config.observability.token_file,
        });
      }
      const info = { providerId: this.#identity.providerId, statusAddress: this.statusAddress };
      const startMs = this.#opts.timing?.startHookTimeoutMs ?? 60_000;
      for (const f of await runStartHooks(this.#allHooks, info, startMs))
        this.log.warn('onStart tap failed; the agent serves without it', {
          tap: f.tap,
          error: f.error.message,
        });
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
        queueMicrotask(() => this.#tell({ type: 'capabilities', frame }));
        return frame;
      },
      heartbeat: () => this.#stats.snapshot(this.#serving?.executor.inFlight ?? 0),
      onState: (state) => this.#setState(state),
      tell: (e) => this.#tell(e),
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
    if (this.#holds.paused)
      return Promise.reject(
        new UsepodError('USEPOD_AGENT_STATE', 'the agent is paused: self-tests run when it serves again'),
      );
    return this.#serving.selftest.run({ wait: true });
  }

  /** Each served model's last self-test. */
  selftestResults(): SelfTestResult[] {
    return this.#serving?.selftest.results() ?? [];
  }

  /** Every plugin's `doctor` lines (plugins are loaded first; nothing is started). */
  async doctor(facts: DoctorFacts): Promise<DoctorFinding[]> {
    await this.load();
    return this.#host.features.doctor(facts, this.#opts.timing?.doctorCheckMs);
  }

  /** Address the status server listens on, when it runs. */
  get statusAddress(): { host: string; port: number } | undefined {
    const a = this.#statusServer?.address();
    return a ? { host: a.address, port: a.port } : undefined;
  }

  /** The Prometheus text of `/metrics`. */
  metricsText(): Promise<string> {
    return this.#metrics.registry.metrics();
  }

  /**
   * `/readyz` for orchestrators: ready while authenticated with at least one model advertised and not
   * draining; otherwise why not, in a few words.
   */
  readiness(): { ready: boolean; reason?: string } {
    return readinessOf(this.#state, this.#holds.first(), this.#offer.advertised.length);
  }

  /** The figures of `/status`, with each plugin's section. */
  status(): AgentStatus {
    const snap = this.snapshot();
    return statusOf(snap, {
      fingerprint: this.#identity?.fingerprint,
      startedAt: this.#startedAt,
      totals: this.#metrics.totals,
      heartbeat: this.#stats.snapshot(snap.inFlight),
      sections: this.#host.features.statusSections(),
    });
  }

  /** The `capabilities` frame as it would be sent now. */
  capabilities(): Promise<CapabilitiesFrame> {
    return this.#offer.frame();
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
    this.#quiet.stop();
    this.#holds.stop();
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
      models: this.#offer.advertised,
      holds: this.#holds.list(),
      selftest: this.#serving?.selftest,
    });
  }

  /** The jobs in flight, oldest first. */
  jobs(): JobInFlight[] {
    return this.#serving?.executor.running() ?? [];
  }

  /** The holds keeping the agent paused, the owner's first (a scoped one names its backends). */
  holds(): Hold[] {
    return this.#holds.list();
  }

  /** The configured backends as core names them (none before start). */
  backends(): AgentBackend[] {
    return (this.#serving?.backends ?? []).map((b) => ({ label: b.label, kind: b.kind, url: b.url }));
  }

  /**
   * The owner takes the machine back (issue 19): the `owner` hold. The coordinator is told no model is
   * served, a job that still arrives is turned away (`out_of_capacity`, recorded as `paused`), jobs in
   * flight finish. `until` resumes by itself (at most ~100 years ahead). Pausing again replaces the
   * reason and the time.
   */
  pause(opts: { reason?: string; until?: Date } = {}): void {
    const until = opts.until;
    if (until !== undefined) {
      const ms = until.getTime() - Date.now();
      if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_HOLD_MS) {
        throw new UsepodError('USEPOD_USAGE', 'a pause must end in the future, at most 100 years from now', {
          user: true,
        });
      }
    }
    this.#holds.hold('owner', { reason: opts.reason ?? 'paused by owner', ...(until ? { until } : {}) });
  }

  /**
   * The owner's resume: lifts their own pause and the quiet-hours window held now (it is theirs until it
   * ends). Holds of other causes (a game on the GPU) last while their cause does: `holds()` says which.
   */
  resume(): void {
    this.#holds.release('owner');
    this.#quiet.override();
  }

  /** What a hold placed or released does to the agent's parts and what it tells. */
  #onHold(c: { by: string; placed: Hold | undefined; paused: boolean }): void {
    const first = this.#holds.first();
    if (first) this.#serving?.executor.pause(first.reason);
    else this.#serving?.executor.resume();
    if (c.placed) {
      const scope = c.placed.backends ? { backends: c.placed.backends } : {};
      this.log.info(c.placed.backends ? 'backends held' : 'paused', {
        by: c.by,
        reason: c.placed.reason,
        ...(c.placed.until ? { until: c.placed.until } : {}),
        ...(c.placed.backends ? { backends: c.placed.backends.join(',') } : {}),
      });
      this.#tell({ type: 'paused', by: c.by, reason: c.placed.reason, until: c.placed.until, ...scope });
    } else {
      this.log.info(c.paused ? 'hold released' : 'resumed', { by: c.by });
      this.#tell({ type: 'resumed', by: c.by, paused: c.paused });
    }
    this.#metrics.paused(c.paused);
    // A scoped hold changed what is served: the plugins' view of the models, as a withdrawal does.
    if (this.#serving) this.#allHooks.onDiscovery.call(this.#serving.discovery.models());
    void this.#offer.resend();
  }
}

/** The identity given, or the key file's (created on first run) under its lock: one key, one agent. */
async function openIdentity(
  keyPath: string,
  given: PersistedIdentity | undefined,
  log: Logger,
): Promise<{ identity: PersistedIdentity; lock: IdentityLock | undefined }> {
  if (given) return { identity: given, lock: undefined };
  const loaded = await loadOrCreateIdentity(keyPath);
  const lock = IdentityLock.acquire(loaded.identity.path);
  if (loaded.created) log.info('identity created', { file: loaded.identity.path });
  if (loaded.permissionWarning) log.warn(loaded.permissionWarning);
  if (lock.warning) log.warn(lock.warning);
  return { identity: loaded.identity, lock };
}

/** What a plugin's context reaches of the agent (`ctx.agent`, holds, notices, metrics). */
function accessOf(
  agent: Agent,
  holds: Holds,
  metrics: AgentMetrics,
  tell: (e: EventOf<'notice'> | EventOf<'plugin'>) => void,
  kinds: () => ReadonlyMap<string, RegisteredKind>,
): AgentAccess & HoldTarget {
  return {
    pause: (o) => agent.pause(o),
    resume: () => agent.resume(),
    holds: () => agent.holds(),
    selftest: () => agent.selftest(),
    selftestResults: () => agent.selftestResults(),
    status: () =>
      agent.state === 'idle' ? undefined : (redactor.redactFields(agent.status()) as AgentStatus),
    jobs: () => agent.jobs(),
    backends: () => agent.backends(),
    configuredKinds: () => {
      const used = new Set(agent.config.backends.map((b) => b.kind));
      return [...kinds().values()].filter((k) => used.has(k.kind));
    },
    hold: (name, o) => holds.hold(name, o),
    release: (name) => holds.release(name),
    notify: tell,
    publish: tell,
    registry: metrics.registry,
  };
}

/** What `agent.identity` shows: the public half, never the means to sign. */
export type AgentIdentity = Readonly<
  Pick<PersistedIdentity, 'path' | 'publicKey' | 'created' | 'fingerprint' | 'providerId'>
>;

/** A plain value (the validated config) frozen all the way down. */
function frozen<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}

/** Creates an agent; call `start()` to connect. */
export function createAgent(opts: CreateAgentOptions): Agent {
  return new Agent(opts);
}
