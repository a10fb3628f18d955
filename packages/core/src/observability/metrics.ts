import type { BackendStatus } from '../backend/backend.js';
import type { AgentEvent, JobOutcome } from '../plugins/hooks.js';
import type { CapabilityModel } from '../protocol/frames.js';
import type { SelfTestResult } from '../routing/selftest.js';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from './prom.js';

/**
 * The agent's Prometheus metrics, in a registry of its own (several agents can
 * share a process). Names follow Prometheus conventions: `usepod_agent_`
 * prefix, base units, `_total` counters.
 */
export const SESSION_STATES = [
  'idle',
  'starting',
  'connecting',
  'online',
  'backoff',
  'stopping',
  'stopped',
] as const;

export interface Totals {
  served: number;
  /** Jobs turned away that the agent could have earned: every refusal but a malformed frame (issue 28). */
  missed: number;
  failed: number;
  cancelled: number;
  inputTokens: number;
  outputTokens: number;
  bytes: number;
  /** micro-USDC, from tokens times the advertised prices. */
  earningsMicro: number;
}

export interface SeedGroup {
  outcome: 'done' | 'error' | 'cancelled';
  errorCode: string | undefined;
  /** A model label, or undefined for `other`. */
  model: string | undefined;
  backend: string | undefined;
  jobs: number;
  /** The group's jobs were refused (missed, not failed). */
  missed?: boolean;
  inputTokens: number;
  outputTokens: number;
  bytes: number;
  earningsMicro: number;
}

/**
 * How often the event-loop delay histogram (`usepod_agent_nodejs_eventloop_lag_*`) samples the loop.
 * prom-client's default, 10 ms, is a timer that woke an idle agent 89 times a second (0.9% of a core,
 * and no deep sleep for the CPU of a machine its owner also uses); sampled each second, a stalled loop
 * still shows, by the delay of the sample it pushed back.
 */
const EVENT_LOOP_SAMPLE_MS = 1_000;

export class AgentMetrics {
  readonly registry = new Registry();
  readonly totals: Totals = {
    served: 0,
    missed: 0,
    failed: 0,
    cancelled: 0,
    inputTokens: 0,
    outputTokens: 0,
    bytes: 0,
    earningsMicro: 0,
  };
  /** Prices last advertised, by model id. */
  #prices = new Map<string, CapabilityModel>();
  readonly #jobs: Counter<'outcome' | 'error_code' | 'model' | 'backend'>;
  readonly #inFlight: Gauge;
  readonly #ttfb: Histogram<'model'>;
  readonly #duration: Histogram<'model' | 'outcome'>;
  readonly #inputTokens: Counter<'model'>;
  readonly #outputTokens: Counter<'model'>;
  readonly #bytes: Counter<'model'>;
  readonly #earnings: Counter<'model'>;
  readonly #state: Gauge<'state'>;
  readonly #reconnects: Counter<'after'>;
  readonly #backendUp: Gauge<'backend' | 'kind'>;
  readonly #backendModels: Gauge<'backend'>;
  readonly #engineRunning: Gauge<'backend'>;
  readonly #engineWaiting: Gauge<'backend'>;
  readonly #engineKv: Gauge<'backend'>;
  readonly #advertised: Gauge;
  readonly #paused: Gauge;
  readonly #selftestOk: Gauge<'backend' | 'model'>;
  readonly #selftestTtft: Gauge<'backend' | 'model'>;
  readonly #selftestRate: Gauge<'backend' | 'model'>;
  readonly #withdrawn: Gauge<'backend' | 'model'>;
  readonly #ejected: Gauge<'backend' | 'model'>;
  readonly #ejections: Counter<'backend'>;

  constructor(version: string, opts: { processMetrics?: boolean; inFlight?: () => number } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics !== false)
      collectDefaultMetrics({
        register: this.registry,
        prefix: 'usepod_agent_',
        eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
      });
    new Gauge({
      name: 'usepod_agent_info',
      help: 'Agent version (always 1).',
      labelNames: ['version'],
      registers,
    }).set({ version }, 1);
    this.#jobs = new Counter({
      name: 'usepod_agent_jobs_total',
      help: 'Jobs ended, by outcome (done, error, cancelled), error code, model and backend.',
      labelNames: ['outcome', 'error_code', 'model', 'backend'],
      registers,
    });
    const inFlight = opts.inFlight;
    this.#inFlight = new Gauge({
      name: 'usepod_agent_jobs_in_flight',
      help: 'Jobs being served now.',
      registers,
      ...(inFlight
        ? {
            collect(this: Gauge) {
              this.set(inFlight());
            },
          }
        : {}),
    });
    this.#ttfb = new Histogram({
      name: 'usepod_agent_time_to_first_byte_seconds',
      help: 'Time from the job frame to the first relayed byte.',
      labelNames: ['model'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#duration = new Histogram({
      name: 'usepod_agent_job_duration_seconds',
      help: 'Time from the job frame to its terminal frame.',
      labelNames: ['model', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.#inputTokens = new Counter({
      name: 'usepod_agent_input_tokens_total',
      help: 'Prompt tokens served (from engine usage).',
      labelNames: ['model'],
      registers,
    });
    this.#outputTokens = new Counter({
      name: 'usepod_agent_output_tokens_total',
      help: 'Output tokens served (from engine usage).',
      labelNames: ['model'],
      registers,
    });
    this.#bytes = new Counter({
      name: 'usepod_agent_relayed_bytes_total',
      help: 'Engine response bytes relayed to the coordinator.',
      labelNames: ['model'],
      registers,
    });
    this.#earnings = new Counter({
      name: 'usepod_agent_earnings_micro_usdc_total',
      help: 'Estimated earnings: tokens times the advertised prices, in micro-USDC. The coordinator bills by its own tokenizer.',
      labelNames: ['model'],
      registers,
    });
    this.#state = new Gauge({
      name: 'usepod_agent_session_state',
      help: 'Connection state (1 for the current one).',
      labelNames: ['state'],
      registers,
    });
    this.#reconnects = new Counter({
      name: 'usepod_agent_reconnects_total',
      help: 'Reconnects, by how the previous session ended.',
      labelNames: ['after'],
      registers,
    });
    this.#backendUp = new Gauge({
      name: 'usepod_agent_backend_up',
      help: 'Backend health from the last probe (1 healthy).',
      labelNames: ['backend', 'kind'],
      registers,
    });
    this.#backendModels = new Gauge({
      name: 'usepod_agent_backend_models',
      help: 'Models a backend can serve now.',
      labelNames: ['backend'],
      registers,
    });
    this.#engineRunning = new Gauge({
      name: 'usepod_agent_engine_requests_running',
      help: 'Requests the engine reports running.',
      labelNames: ['backend'],
      registers,
    });
    this.#engineWaiting = new Gauge({
      name: 'usepod_agent_engine_requests_waiting',
      help: 'Requests the engine reports queued.',
      labelNames: ['backend'],
      registers,
    });
    this.#engineKv = new Gauge({
      name: 'usepod_agent_engine_kv_cache_usage_ratio',
      help: 'Engine KV-cache usage, 0..1.',
      labelNames: ['backend'],
      registers,
    });
    this.#advertised = new Gauge({
      name: 'usepod_agent_advertised_models',
      help: 'Models in the last capabilities frame.',
      registers,
    });
    this.#paused = new Gauge({
      name: 'usepod_agent_paused',
      help: '1 while the owner has paused the agent (no model advertised, new jobs turned away).',
      registers,
    });
    // Models as labels here come from the engines' lists, already checked and bounded (untrusted.ts).
    const pair = { labelNames: ['backend', 'model'] as const, registers };
    this.#selftestOk = new Gauge({
      name: 'usepod_agent_selftest_ok',
      help: 'Last self-test of a model on a backend passed (1) or failed (0).',
      ...pair,
    });
    this.#selftestTtft = new Gauge({
      name: 'usepod_agent_selftest_ttft_seconds',
      help: 'Time to first token of the last passing self-test.',
      ...pair,
    });
    this.#selftestRate = new Gauge({
      name: 'usepod_agent_selftest_tokens_per_second',
      help: 'Decode speed of the last passing self-test.',
      ...pair,
    });
    this.#withdrawn = new Gauge({
      name: 'usepod_agent_model_withdrawn',
      help: '1 while a model is withdrawn from a backend: it failed its self-tests, or its real jobs (ejected).',
      ...pair,
    });
    this.#ejected = new Gauge({
      name: 'usepod_agent_model_ejected',
      help: '1 while a model is ejected from a backend after its real jobs failed there, until a self-test passes.',
      ...pair,
    });
    // By backend only: backends come from the config; a model label on a counter would be kept for good.
    this.#ejections = new Counter({
      name: 'usepod_agent_ejections_total',
      help: 'Times a model was ejected from a backend after its real jobs failed there (each retest failed counts).',
      labelNames: ['backend'],
      registers,
    });
    this.state('idle');
  }

  /**
   * A job's model as a label: one of the models last advertised, else `other`. The coordinator names a
   * job's model, and each name it chose would otherwise become series kept for the life of the process
   * (issue 14: 20,000 ids made 320,000 series).
   */
  modelLabel(model: string): string {
    return this.#prices.has(model) ? model : 'other';
  }

  job(o: JobOutcome): void {
    const model = this.modelLabel(o.model);
    this.#jobs.inc({ outcome: o.outcome, error_code: o.errorCode ?? '', model, backend: o.backend ?? '' });
    this.#duration.observe({ model, outcome: o.outcome }, o.durationMs / 1000);
    if (o.firstByteMs !== undefined) this.#ttfb.observe({ model }, o.firstByteMs / 1000);
    if (o.inputTokens) this.#inputTokens.inc({ model }, o.inputTokens);
    if (o.outputTokens) this.#outputTokens.inc({ model }, o.outputTokens);
    if (o.bytes) this.#bytes.inc({ model }, o.bytes);
    const t = this.totals;
    if (o.outcome === 'done') t.served++;
    else if (o.outcome === 'error' && o.refusal && o.refusal !== 'malformed') t.missed++;
    else if (o.outcome === 'error') t.failed++;
    else t.cancelled++;
    t.inputTokens += o.inputTokens;
    t.outputTokens += o.outputTokens;
    t.bytes += o.bytes;
    const price = this.#prices.get(o.model);
    if (price && o.outcome === 'done') {
      const micro = (o.inputTokens * price.input_per_1m + o.outputTokens * price.output_per_1m) / 1_000_000;
      if (micro > 0) {
        this.#earnings.inc({ model }, micro);
        t.earningsMicro += micro;
      }
    }
  }

  /**
   * Counters resumed from a ledger at start (issue 18): a restart does not zero what was served. Each
   * group is one ledger aggregate; its model is kept as a label only when it is a served model (the
   * caller bounds how many), else `other`.
   */
  /** The facts of the observation stream that move a metric. */
  event(e: AgentEvent): void {
    if (e.type === 'job_end') this.job(e.job);
    else if (e.type === 'state') this.state(e.state);
    else if (e.type === 'reconnect') this.reconnect(e.after);
  }

  seed(groups: SeedGroup[]): void {
    const t = this.totals;
    for (const g of groups) {
      const model = g.model ?? 'other';
      this.#jobs.inc(
        { outcome: g.outcome, error_code: g.errorCode ?? '', model, backend: g.backend ?? '' },
        g.jobs,
      );
      if (g.inputTokens) this.#inputTokens.inc({ model }, g.inputTokens);
      if (g.outputTokens) this.#outputTokens.inc({ model }, g.outputTokens);
      if (g.bytes) this.#bytes.inc({ model }, g.bytes);
      if (g.earningsMicro > 0) this.#earnings.inc({ model }, g.earningsMicro);
      if (g.outcome === 'done') t.served += g.jobs;
      else if (g.outcome === 'error' && g.missed) t.missed += g.jobs;
      else if (g.outcome === 'error') t.failed += g.jobs;
      else t.cancelled += g.jobs;
      t.inputTokens += g.inputTokens;
      t.outputTokens += g.outputTokens;
      t.bytes += g.bytes;
      t.earningsMicro += g.earningsMicro;
    }
  }

  paused(on: boolean): void {
    this.#paused.set(on ? 1 : 0);
    if (on) this.#advertised.set(0);
    else this.#advertised.set(this.#prices.size);
  }

  /** The prices last advertised for a model. */
  priceOf(model: string): { input_per_1m: number; output_per_1m: number } | undefined {
    return this.#prices.get(model);
  }

  capabilities(models: CapabilityModel[]): void {
    this.#prices = new Map(models.map((m) => [m.model_id, m]));
    this.#advertised.set(models.length);
  }

  state(s: string): void {
    for (const name of SESSION_STATES) this.#state.set({ state: name }, name === s ? 1 : 0);
  }

  reconnect(after: string): void {
    this.#reconnects.inc({ after });
  }

  backend(label: string, kind: string, status: BackendStatus | undefined): void {
    this.#backendUp.set({ backend: label, kind }, status?.healthy ? 1 : 0);
    this.#backendModels.set({ backend: label }, status?.healthy ? status.models.length : 0);
    const load = status?.load;
    if (load?.running !== undefined) this.#engineRunning.set({ backend: label }, load.running);
    if (load?.waiting !== undefined) this.#engineWaiting.set({ backend: label }, load.waiting);
    if (load?.kvCacheUsage !== undefined) this.#engineKv.set({ backend: label }, load.kvCacheUsage);
  }

  /** Every pair's last self-test; pairs no longer served drop out of the series. */
  selftest(results: readonly SelfTestResult[]): void {
    const gauges = [this.#selftestOk, this.#selftestTtft, this.#selftestRate, this.#withdrawn, this.#ejected];
    for (const g of gauges) g.reset();
    for (const r of results) {
      const labels = { backend: r.backend, model: r.model };
      this.#selftestOk.set(labels, r.ok ? 1 : 0);
      this.#withdrawn.set(labels, r.withdrawn ? 1 : 0);
      this.#ejected.set(labels, r.ejectedUntil !== undefined ? 1 : 0);
      if (r.ttftMs !== undefined) this.#selftestTtft.set(labels, r.ttftMs / 1000);
      if (r.tokensPerSecond !== undefined) this.#selftestRate.set(labels, r.tokensPerSecond);
    }
  }

  /** A pair was ejected (or ejected again) after its real jobs failed. */
  ejected(backend: string): void {
    this.#ejections.inc({ backend });
  }

  inFlight(n: number): void {
    this.#inFlight.set(n);
  }
}
