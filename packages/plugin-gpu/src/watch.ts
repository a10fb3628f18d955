import type { Logger, PluginContext } from '@usepod-agent/core';
import type { JobAttribution } from './attribution.js';
import { EnergyMeter } from './energy.js';
import { HeatGuard } from './heat.js';
import { type Detected, detect, type Gpu, type GpuState } from './read.js';
import { basename, isEngine, yieldReason } from './rules.js';
import { backendsOn } from './scope.js';
import type { YieldSection } from './section.js';
import type { RunTool } from './tool.js';

/**
 * The GPU watch: every `poll_s` it reads the GPUs (nvidia-smi, rocm-smi) and feeds the yield rule (the
 * `gpu` hold), the heat and power guard (the `heat` hold), the energy meter and the metrics. Its holds
 * live only in memory: every start recomputes them from the GPUs (issue 28), so a restart after the game
 * is gone serves at once. Without the tools it says once that it is unavailable and stops; it never
 * throws, and a tool that hangs or fails is killed, said once, and asked again at the next poll.
 */
export interface WatchOptions {
  cfg: YieldSection;
  /** Which parts are asked for. */
  yieldRule: boolean;
  guard: boolean;
  energy: boolean;
  /** `[energy] price_per_kwh` (USDC): status shows what the energy cost. */
  pricePerKwh?: number | undefined;
  engines: () => readonly string[];
  run: RunTool;
  ctx: Pick<PluginContext, 'hold' | 'release' | 'notify' | 'metrics' | 'publish' | 'agent'> & { log: Logger };
  /** The jobs the energy of each interval is shared by (serving), or nobody (idle). */
  jobs: JobAttribution;
  now?: () => number;
  /** Monotonic ms (default `performance.now`), for how long something has lasted. */
  elapsed?: () => number;
}

/** Process names shown in status and doctor: a few, folded at the read. */
const MAX_SHOWN = 8;

/** A GPU's labels on its gauges. */
type GpuLabels = { tool: Gpu['tool']; gpu: number };

export class GpuWatch {
  readonly #o: WatchOptions;
  readonly #now: () => number;
  /**
   * Cooldowns and how long the tools have failed are counted on the monotonic clock: on the wall clock,
   * one stepped back (NTP fixing a dual boot's local-time RTC) kept a hold for as long as the step.
   */
  readonly #elapsed: () => number;
  readonly #guard: HeatGuard;
  readonly #meter: EnergyMeter;
  readonly #m: ReturnType<typeof declareMetrics>;
  #detected: Detected | undefined;
  #unavailable: string | undefined;
  #failing: string | undefined;
  /** Since when the tools have failed without a break (monotonic ms). */
  #failingSince: number | undefined;
  #state: GpuState | undefined;
  #readAt: number | undefined;
  #gpuReason: string | undefined;
  /** The backends the heat hold withdraws; undefined: the whole agent (or no hold). */
  #heatScope: string[] | undefined;
  /** Since when the yield rule has found nothing (monotonic ms). */
  #quietSince: number | undefined;
  #lastPoll: number | undefined;
  /** The GPUs the last poll's figures were exported for, by `tool:index`. */
  #shown = new Map<string, GpuLabels>();
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** Resolves after each poll (tests and `stop` wait on it). */
  #polling: Promise<void> | undefined;

  constructor(o: WatchOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#elapsed = o.elapsed ?? (() => performance.now());
    this.#guard = new HeatGuard(o.cfg);
    this.#meter = new EnergyMeter(Math.max(5 * o.cfg.poll_s * 1000, 60_000));
    this.#m = declareMetrics(o.ctx.metrics, o);
  }

  get energy(): EnergyMeter {
    return this.#meter;
  }

  start(): void {
    const loop = async () => {
      // Nothing a poll meets stops the polls: whatever it throws is said, and the next one runs.
      this.#polling = this.#poll().catch((err: unknown) =>
        this.#o.ctx.log.warn('GPU poll failed', { error: err instanceof Error ? err.message : String(err) }),
      );
      await this.#polling;
      if (!this.#stopped) this.#timer = setTimeout(loop, this.#o.cfg.poll_s * 1000);
    };
    void loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
  }

  async #read(): Promise<GpuState | undefined> {
    const { log } = this.#o.ctx;
    try {
      let state: GpuState;
      if (!this.#detected) {
        this.#detected = await detect(this.#o.run);
        log.info('GPU-aware yielding on', { tools: this.#detected.tools.join(',') });
        state = this.#detected.first;
      } else {
        state = await this.#detected.read();
      }
      if (this.#failing) log.info('GPU-aware yielding reads the GPUs again');
      this.#failing = undefined;
      this.#failingSince = undefined;
      return state;
    } catch (err) {
      if (this.#stopped) return undefined;
      const e = err as Error & { absent?: boolean };
      const why = e.message.split('\n')[0] ?? 'failed';
      if (e.absent) {
        this.#unavailable = why;
        log.warn(
          'GPU-aware yielding is unavailable: neither nvidia-smi nor rocm-smi is here; [yield] is ignored',
          {
            error: why,
          },
        );
        this.#stopped = true;
        return undefined;
      }
      this.#m.failures.inc();
      // A tool that hung (killed) or failed (a busy driver) is asked again at the next poll, said once.
      if (!this.#failing) log.warn('GPU state could not be read; trying again every poll', { error: why });
      this.#failing = why;
      this.#failingSince ??= this.#elapsed();
      this.#unheld(this.#elapsed() - this.#failingSince);
      return undefined;
    }
  }

  async #poll(): Promise<void> {
    const state = await this.#read();
    if (this.#stopped || !state) return;
    const now = this.#now();
    const since = this.#lastPoll;
    this.#lastPoll = now;
    this.#state = state;
    this.#readAt = now;
    this.#figures(state.gpus);
    if (this.#o.energy) {
      const { joules, measured } = this.#meter.add(state.gpus, now);
      const serving = since === undefined ? 0 : this.#o.jobs.interval(since, now, joules, measured);
      this.#meter.count(joules, serving);
      if (serving > 0) this.#m.energy.inc(serving, { kind: 'serving' });
      if (joules - serving > 0) this.#m.energy.inc(joules - serving, { kind: 'idle' });
      // The ledger keeps energy per quarter hour, serving and idle (docs/hooks.md, `energy.period`).
      if (since !== undefined && joules > 0)
        this.#o.ctx.publish('energy.period', {
          from: since,
          to: now,
          servingWh: serving / 3600,
          idleWh: (joules - serving) / 3600,
        });
      this.#o.jobs.polled(now);
    }
    if (this.#o.yieldRule) this.#yield(state, this.#elapsed());
    if (this.#o.guard) this.#heat(state, this.#elapsed());
  }

  /**
   * A tool that keeps failing must not keep the agent paused for good (issue 28): after `cooldown_s` and
   * three polls without a reading, the holds this watch placed are lifted, as if it had no tool, said once.
   */
  #unheld(failingMs: number): void {
    const { cfg, ctx } = this.#o;
    if (failingMs < cfg.cooldown_s * 1000 + 3 * cfg.poll_s * 1000) return;
    if (this.#gpuReason === undefined && this.#guard.reason === undefined) return;
    ctx.log.warn('the GPUs could not be read for a while: the agent serves again until they can', {
      error: this.#failing,
    });
    if (this.#gpuReason !== undefined) {
      this.#gpuReason = undefined;
      this.#quietSince = undefined;
      ctx.release('gpu');
      this.#m.yieldHeld.set(0);
    }
    if (this.#guard.reason !== undefined) {
      this.#guard.reset();
      this.#heatScope = undefined;
      ctx.release('heat');
      this.#m.heatHeld.set(0);
    }
  }

  /** `now`: monotonic ms. */
  #yield(state: GpuState, now: number): void {
    const why = yieldReason(this.#o.cfg, this.#o.engines(), state);
    if (why) {
      this.#quietSince = undefined;
      const reason = `GPU in use: ${why}`;
      if (this.#gpuReason !== reason) this.#o.ctx.hold('gpu', { reason });
      this.#gpuReason = reason;
    } else if (this.#gpuReason !== undefined) {
      this.#quietSince ??= now;
      if (now - this.#quietSince >= this.#o.cfg.cooldown_s * 1000) {
        this.#gpuReason = undefined;
        this.#quietSince = undefined;
        this.#o.ctx.release('gpu');
      }
    }
    this.#m.yieldHeld.set(this.#gpuReason ? 1 : 0);
  }

  /** `now`: monotonic ms. */
  #heat(state: GpuState, now: number): void {
    const change = this.#guard.update(state.gpus, now);
    const { ctx } = this.#o;
    if (change && 'hold' in change) {
      // Only the hot GPUs' engines, when the tool says which run there; else the whole agent, as before.
      const scope = backendsOn(
        change.gpus,
        state.processes,
        ctx.agent.configuredKinds(),
        ctx.agent.backends(),
      );
      this.#heatScope = scope;
      const reason = scope
        ? change.hold
        : `${change.hold} (which engines run on it is unknown: the whole agent is held)`;
      ctx.hold('heat', { reason, ...(scope ? { backends: scope } : {}) });
      ctx.notify({
        name: 'heat_pause',
        severity: 'warning',
        title: scope
          ? `A GPU runs over its limit: its engines take no new job (${scope.join(', ')})`
          : 'A GPU runs over its limit: the agent takes no new job',
        message: `${reason}; jobs in flight finish, and it serves again after cooldown_s under the limit`,
      });
    } else if (change && 'release' in change) {
      this.#heatScope = undefined;
      ctx.release('heat');
      ctx.notify({
        name: 'heat_pause',
        severity: 'info',
        title: 'The GPUs cooled down: the agent serves again',
        message: `it was held ${change.release}`,
        resolved: true,
      });
    }
    this.#m.heatHeld.set(this.#guard.reason ? 1 : 0);
  }

  #figures(gpus: readonly Gpu[]): void {
    const gauges = [this.#m.power, this.#m.powerLimit, this.#m.temp];
    const now = new Map<string, GpuLabels>();
    for (const g of gpus) {
      const labels: GpuLabels = { tool: g.tool, gpu: g.index };
      now.set(`${g.tool}:${g.index}`, labels);
      const put = (gauge: (typeof gauges)[number], v?: number) =>
        v === undefined ? gauge.remove(labels) : gauge.set(v, labels);
      put(this.#m.power, g.powerW);
      put(this.#m.powerLimit, g.powerLimitW);
      put(this.#m.temp, g.tempC);
    }
    // A GPU the tool no longer lists (gone, or a tool whose answer changes) shows no stale figure, and its
    // series are freed: else each new index would hold one for good, up to the series bound.
    for (const [key, labels] of this.#shown)
      if (!now.has(key)) for (const gauge of gauges) gauge.remove(labels);
    this.#shown = now;
  }

  /** The `gpu` section of `status` and `/status`. */
  status(): Record<string, unknown> {
    const s = this.#state;
    const engines = this.#o.engines();
    const others = (s?.processes ?? []).filter((p) => p.name !== undefined && !isEngine(engines, p.name));
    const energy = this.#meter.totals;
    return {
      tools: this.#detected?.tools ?? [],
      ...(this.#unavailable ? { unavailable: this.#unavailable } : {}),
      ...(this.#failing ? { failing: this.#failing } : {}),
      read_at: this.#readAt === undefined ? null : new Date(this.#readAt).toISOString(),
      gpus: (s?.gpus ?? []).map((g) => ({
        tool: g.tool,
        index: g.index,
        name: g.name ?? null,
        util_pct: g.utilPct ?? null,
        free_mb: g.freeMb ?? null,
        total_mb: g.totalMb ?? null,
        power_w: g.powerW ?? null,
        power_limit_w: g.powerLimitW ?? null,
        temp_c: g.tempC ?? null,
      })),
      other_processes: others
        .slice(0, MAX_SHOWN)
        .map((p) => ({ pid: p.pid ?? null, name: basename(p.name!) })),
      ...(this.#o.yieldRule
        ? {
            yield: {
              held: this.#gpuReason !== undefined,
              reason: this.#gpuReason ?? null,
              quiet_since:
                this.#quietSince === undefined
                  ? null
                  : new Date(this.#now() - (this.#elapsed() - this.#quietSince)).toISOString(),
            },
          }
        : {}),
      ...(this.#o.guard
        ? {
            heat: {
              max_temp_c: this.#o.cfg.max_temp_c ?? null,
              max_power_w: this.#o.cfg.max_power_w ?? null,
              held: this.#guard.reason !== undefined,
              reason: this.#guard.reason ?? null,
              // The backends held (a hot GPU's engines); null: the whole agent, or nothing held.
              backends: this.#heatScope ?? null,
            },
          }
        : {}),
      ...(this.#o.energy
        ? {
            energy: {
              serving_wh: round(energy.servingJ / 3600),
              idle_wh: round(energy.idleJ / 3600),
              ...(this.#o.pricePerKwh !== undefined
                ? {
                    price_per_kwh: this.#o.pricePerKwh,
                    cost_usdc: round(((energy.servingJ + energy.idleJ) / 3_600_000) * this.#o.pricePerKwh),
                  }
                : {}),
            },
          }
        : {}),
    };
  }
}

const round = (v: number) => Math.round(v * 1000) / 1000;

function declareMetrics(metrics: WatchOptions['ctx']['metrics'], o: WatchOptions) {
  const gpu = ['tool', 'gpu'] as const;
  const m = {
    failures: metrics.counter('usepod_agent_gpu_tool_failures_total', 'GPU tool runs that failed or hung'),
    power: metrics.gauge('usepod_agent_gpu_power_watts', 'Power each GPU draws, W', gpu),
    powerLimit: metrics.gauge('usepod_agent_gpu_power_limit_watts', 'Power limit of each GPU, W', gpu),
    temp: metrics.gauge('usepod_agent_gpu_temperature_celsius', 'Temperature of each GPU, °C', gpu),
    energy: metrics.counter(
      'usepod_agent_energy_joules_total',
      'Energy the GPUs used, J: serving (jobs in flight) or idle',
      ['kind'],
    ),
    yieldHeld: metrics.gauge('usepod_agent_gpu_yield_held', '1 while GPU yielding holds the agent paused'),
    heatHeld: metrics.gauge('usepod_agent_gpu_heat_held', '1 while the heat or power guard holds the agent'),
  };
  if (o.yieldRule) m.yieldHeld.set(0);
  if (o.guard) m.heatHeld.set(0);
  return m;
}
