import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { topLevelLogger } from '../observability/log.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { JobStats } from '../observability/stats.js';
import type { AgentEvent, AgentHooks } from '../plugins/hooks.js';
import type { PluginHost } from '../plugins/host.js';
import { Executor } from '../relay/executor.js';
import type { JobJournal } from '../relay/journal.js';
import { TokenBudget } from '../relay/token-budget.js';
import { Discovery } from '../routing/discovery.js';
import { ejectionSettings } from '../routing/ejection.js';
import { SelfTest, selfTestSettings } from '../routing/selftest.js';
import { createBackends } from './backends.js';
import type { AgentTiming } from './types.js';

/**
 * What serves jobs once the agent has started: the backends, discovery (what they serve, and routing),
 * the self-tests that withdraw a model that stopped answering, and the executor. The agent owns the
 * session, the pause and what it all reports; this owns the parts, their wiring and their release.
 */

export interface ServingOptions {
  config: Config;
  host: PluginHost;
  hooks: AgentHooks;
  log: Logger;
  metrics: AgentMetrics;
  stats: JobStats;
  timing: AgentTiming;
  env: Record<string, string | undefined>;
  journal: JobJournal | undefined;
  /** True while no self-test may run besides max_concurrent: paused, stopping. */
  held(): boolean;
  /** Why a scoped hold withdraws this backend's models (its label), or undefined. */
  backendHeld(label: string): string | undefined;
  /** The servable set changed (probe, withdrawal): re-advertise. */
  onServableChange(): void;
  /** Told to `onEvent`. */
  tell(event: AgentEvent): void;
}

export class Serving {
  readonly backends: Backend[];
  readonly discovery: Discovery;
  readonly selftest: SelfTest;
  readonly executor: Executor;
  #budgetToldAt = Number.NEGATIVE_INFINITY;

  constructor(o: ServingOptions) {
    const { config, timing } = o;
    this.backends = createBackends(o.host, config, o.env, o.log);
    const discovery = new Discovery({
      backends: this.backends,
      priority: o.host.priority,
      intervalMs: timing.discoveryIntervalMs ?? config.discovery.interval_s * 1000,
      log: o.log.child('discovery'),
      onChange: () => {
        o.hooks.onDiscovery.call(discovery.models());
        o.onServableChange();
      },
      onProbed: (states) => {
        for (const s of states) o.metrics.backend(s.backend.label, s.backend.kind, s.status);
      },
      withdrawn: (backend, model) => this.selftest.isWithdrawn(backend, model),
      held: (backend) => o.backendHeld(backend.label),
      onHealth: (backend, healthy, detail) =>
        o.tell(
          healthy
            ? { type: 'backend_up', backend: backend.label, kind: backend.kind }
            : { type: 'backend_down', backend: backend.label, kind: backend.kind, detail: detail ?? 'down' },
        ),
    });
    this.discovery = discovery;
    this.executor = new Executor({
      hooks: o.hooks,
      onStart: (jobId, model) => o.tell({ type: 'job_start', jobId, model }),
      onEnd: (job) => o.tell({ type: 'job_end', job }),
      log: o.log.child('executor'),
      jobLog: topLevelLogger(o.log, 'job'),
      ...(o.journal ? { journal: o.journal } : {}),
      priceOf: (model) => o.metrics.priceOf(model),
      stats: o.stats,
      router: discovery,
      maxConcurrent: config.limits.max_concurrent,
      maxRequestBytes: config.limits.max_request_bytes,
      budget: new TokenBudget(config.limits.max_tokens_per_minute),
      onBudgetRefusal: () => {
        // Once per minute at most: the budget is a rolling minute, and refusals come in bursts.
        const now = Date.now();
        if (now - this.#budgetToldAt < 60_000) return;
        this.#budgetToldAt = now;
        o.tell({ type: 'budget_exhausted', limit: config.limits.max_tokens_per_minute ?? 0 });
      },
      ...(timing.stallTimeoutMs ? { stallTimeoutMs: timing.stallTimeoutMs } : {}),
      onBackendEnd: (backend, model, failure) => this.selftest.reportJob(backend, model, failure),
    });
    const c = config.selftest;
    const selftest = new SelfTest({
      targets: () => discovery.listed(),
      // Never while the owner has the machine, the agent drains, or customers fill max_concurrent.
      busy: () => o.held() || this.executor.inFlight >= config.limits.max_concurrent,
      intervalMs: timing.selftestIntervalMs ?? c.interval_s * 1000,
      ...selfTestSettings(c),
      log: o.log.child('selftest'),
      adjustInFlight: (b, d) => discovery.adjustInFlight(b, d),
      eject: ejectionSettings(c),
    });
    selftest.on('result', (result) => {
      o.metrics.selftest(selftest.results());
      o.tell({ type: 'selftest', result });
    });
    selftest.on('ejected', (r) => {
      o.metrics.ejected(r.backend);
      o.metrics.selftest(selftest.results());
    });
    selftest.on('withdrawn', (r, withdrawn) => {
      o.tell(
        withdrawn
          ? r.ejectedUntil !== undefined
            ? {
                type: 'model_withdrawn',
                cause: 'jobs',
                backend: r.backend,
                model: r.model,
                detail: r.jobError ?? 'failed',
                until: r.ejectedUntil,
              }
            : {
                type: 'model_withdrawn',
                cause: 'selftests',
                backend: r.backend,
                model: r.model,
                detail: r.error ?? 'failed',
                until: undefined,
              }
          : { type: 'model_back', backend: r.backend, model: r.model },
      );
      o.hooks.onDiscovery.call(discovery.models());
      o.onServableChange();
    });
    this.selftest = selftest;
  }

  /** Probes every backend once, then keeps probing and self-testing on their intervals. */
  async start(): Promise<void> {
    await this.discovery.start();
    this.selftest.start();
  }

  /**
   * Graceful drain: new jobs refused, jobs in flight given up to `graceMs` to finish, the rest ended
   * (`job_error`), and every terminal frame handed over before it resolves.
   */
  async drain(graceMs: number, log: Logger): Promise<void> {
    const ex = this.executor;
    ex.stopAccepting();
    if (ex.inFlight > 0 && graceMs > 0) {
      log.info('draining jobs in flight', { jobs: ex.inFlight, grace_ms: graceMs });
      const timer = new AbortController();
      await Promise.race([ex.idle(), sleep(graceMs, undefined, { signal: timer.signal }).catch(() => {})]);
      timer.abort();
    }
    ex.abortAll('shutdown');
    await ex.idle();
  }

  async release(): Promise<void> {
    await this.selftest.stop();
    await this.discovery.stop();
    await Promise.all(this.backends.map((b) => b.close().catch(() => {})));
  }
}

/** Counters resume where the journal left them: a restart does not zero Prometheus' totals. */
export async function seedFromJournal(
  journal: JobJournal | undefined,
  metrics: AgentMetrics,
  log: Logger,
  before: number,
): Promise<void> {
  if (!journal?.totals) return;
  try {
    metrics.seed(await journal.totals(before));
  } catch (err) {
    log.warn('the journal gave no totals; counters start at zero', { error: errorMessage(err) });
  }
}
