import type { Backend, BackendModel, BackendStatus } from '../backend/backend.js';
import type { Logger } from '../observability/log.js';
import type { RouterView } from '../relay/executor.js';
import { timeoutSignal } from '../timers.js';
import { checkStatus } from '../untrusted.js';
import { type KindPriority, type ServedModel, samePriority } from './capabilities.js';

/**
 * Keeps what every backend can serve now, re-probing on an interval and soon
 * after a failure, and routes each model to the least-loaded healthy backend.
 */

export interface BackendState {
  backend: Backend;
  status: BackendStatus | undefined;
  inFlight: number;
  probedAt: number | undefined;
}

export interface DiscoveryOptions {
  backends: Backend[];
  /** Routing preference of each kind, from its plugin (lower first). */
  priority?: KindPriority;
  intervalMs: number;
  /** A bound on each probe besides the plugin's own (`selftest` standalone: 5 s); none by default. */
  probeTimeoutMs?: number;
  log: Logger;
  /** Called when the servable set (models, windows, backends) changed after a probe. */
  onChange(): void;
  /** Called after every probe round, changed or not (metrics). */
  onProbed?(states: readonly BackendState[]): void;
  /** A backend turned unhealthy (with why) or healthy again. */
  onHealth?(backend: Backend, healthy: boolean, detail: string | undefined): void;
  /** A pair its self-tests withdrew: healthy, but neither advertised nor routed to (selftest.ts). */
  withdrawn?(backend: Backend, model: string): boolean;
  /** Why a scoped hold withdraws this backend's models (a hot GPU), or undefined. */
  held?(backend: Backend): string | undefined;
}

/** A signature of what is advertised, to tell a real change from a re-probe that found the same. */
function signature(states: BackendState[]): string {
  const rows: string[] = [];
  for (const s of states) {
    if (!s.status?.healthy) continue;
    for (const m of s.status.models) rows.push(`${s.backend.label}|${m.id}|${m.contextWindow ?? ''}`);
  }
  return rows.sort().join('\n');
}

export class Discovery implements RouterView {
  readonly states: BackendState[];
  readonly #o: DiscoveryOptions;
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #probing: Promise<void> | undefined;
  #signature = '';
  #stopped = false;
  readonly #abort = new AbortController();
  readonly #priority: KindPriority;

  constructor(opts: DiscoveryOptions) {
    this.#o = opts;
    this.#priority = opts.priority ?? samePriority;
    this.states = opts.backends.map((backend) => ({
      backend,
      status: undefined,
      inFlight: 0,
      probedAt: undefined,
    }));
  }

  /** Probes every backend once, then on the interval. */
  async start(): Promise<void> {
    await this.probeAll();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.probeAll().finally(() => this.#schedule());
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  /** Probes every backend now; concurrent calls share one probe round. */
  probeAll(): Promise<void> {
    this.#probing ??= this.#probeRound().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  async #probeRound(): Promise<void> {
    const { log } = this.#o;
    await Promise.all(
      this.states.map(async (s) => {
        const before = s.status?.healthy;
        // Not AbortSignal.timeout inside AbortSignal.any, which Node 20 may collect before it fires.
        const deadline = this.#o.probeTimeoutMs
          ? timeoutSignal(this.#o.probeTimeoutMs, this.#abort.signal)
          : undefined;
        const reported = await s.backend
          .probe(deadline?.signal ?? this.#abort.signal)
          .catch(
            (err: unknown): BackendStatus => ({ healthy: false, models: [], detail: (err as Error).message }),
          )
          .finally(() => deadline?.clear());
        // What an engine lists is bounded here, before it reaches a frame, a metric or a terminal.
        const { status, dropped } = checkStatus(reported);
        if (dropped.invalidIds > 0 || dropped.overLimit > 0) {
          log.warn('backend listed models that are not offered', {
            backend: s.backend.label,
            invalid_ids: dropped.invalidIds,
            over_limit: dropped.overLimit,
          });
        }
        s.status = status;
        s.probedAt = Date.now();
        if (before !== status.healthy) {
          if (status.healthy)
            log.info('backend healthy', { backend: s.backend.label, models: status.models.length });
          else log.warn('backend unhealthy', { backend: s.backend.label, detail: status.detail });
          // The first probe of a healthy backend is no news; a first probe that fails is.
          if (before !== undefined || !status.healthy)
            this.#o.onHealth?.(s.backend, status.healthy, status.detail);
        }
      }),
    );
    if (this.#stopped) return;
    this.#o.onProbed?.(this.states);
    const sig = signature(this.states);
    if (sig !== this.#signature) {
      this.#signature = sig;
      this.#o.onChange();
    }
  }

  /** Every servable model of every healthy backend, less the pairs self-tests withdrew and held backends. */
  served(): ServedModel[] {
    const withdrawn = this.#o.withdrawn;
    const out: ServedModel[] = [];
    for (const s of this.states) {
      if (!s.status?.healthy || this.#o.held?.(s.backend) !== undefined) continue;
      for (const model of s.status.models) {
        if (withdrawn?.(s.backend, model.id)) continue;
        out.push({ backend: s.backend, model, capacity: s.status.load?.capacity });
      }
    }
    return out;
  }

  /** Every model of every healthy backend, withdrawn or not (held backends not): what self-tests try. */
  listed(): { backend: Backend; model: string }[] {
    return this.states
      .filter((s) => s.status?.healthy && this.#o.held?.(s.backend) === undefined)
      .flatMap((s) => s.status!.models.map((m) => ({ backend: s.backend, model: m.id })));
  }

  models(): BackendModel[] {
    return this.served().map((s) => s.model);
  }

  candidates(model: string): Backend[] {
    const withdrawn = this.#o.withdrawn;
    const fit = this.states.filter(
      (s) =>
        s.status?.healthy &&
        s.status.models.some((m) => m.id === model) &&
        !withdrawn?.(s.backend, model) &&
        this.#o.held?.(s.backend) === undefined,
    );
    // One engine per model is the common host: nothing to rank.
    if (fit.length < 2) return fit.length === 1 ? [fit[0]!.backend] : [];
    return fit
      .sort(
        (a, b) =>
          loadScore(a) - loadScore(b) || this.#priority(a.backend.kind) - this.#priority(b.backend.kind),
      )
      .map((s) => s.backend);
  }

  /**
   * Why `model` is not served now though a healthy backend has it: every such backend is under a scoped
   * hold (the job is refused `out_of_capacity`, not `model_not_loaded`); undefined otherwise.
   */
  heldFor(model: string): string | undefined {
    const held = this.#o.held;
    if (!held) return undefined;
    let why: string | undefined;
    for (const s of this.states) {
      if (!s.status?.healthy || !s.status.models.some((m) => m.id === model)) continue;
      const reason = held(s.backend);
      if (reason === undefined) return undefined;
      why ??= reason;
    }
    return why;
  }

  reportFailure(backend: Backend): void {
    const s = this.states.find((x) => x.backend === backend);
    if (s?.status?.healthy) {
      s.status = { ...s.status, healthy: false, detail: 'unreachable during a job' };
      this.#o.onHealth?.(backend, false, s.status.detail);
    }
    // Re-probe soon, once, however many jobs failed.
    if (this.#soon || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.probeAll();
    }, 250);
    this.#soon.unref();
  }

  speaksAnthropic(backend: Backend, model: string): boolean {
    const s = this.states.find((x) => x.backend === backend);
    return s?.status?.models.find((m) => m.id === model)?.anthropicNative === true;
  }

  adjustInFlight(backend: Backend, delta: number): void {
    const s = this.states.find((x) => x.backend === backend);
    if (s) s.inFlight = Math.max(0, s.inFlight + delta);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#soon);
    this.#abort.abort();
    await this.#probing?.catch(() => {});
  }
}

/**
 * Relative load of a backend: our own jobs in flight plus the engine's queue,
 * scaled by its capacity when the engine says how many it runs at once. A
 * KV cache close to full (the engine is about to preempt) counts as one more
 * full engine's worth, so such a backend is picked only when all others are busy.
 */
export function loadScore(s: BackendState): number {
  const load = s.status?.load;
  const engineBusy = Math.max(s.inFlight, load?.running ?? 0) + (load?.waiting ?? 0);
  const capacity = load?.capacity && load.capacity > 0 ? load.capacity : 1;
  const kvFull = (load?.kvCacheUsage ?? 0) >= 0.9 ? 1 : 0;
  return engineBusy / capacity + kvFull;
}
