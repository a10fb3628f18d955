import { type AgentPlugin, definePlugin } from '@usepod-agent/core';
import { JobAttribution, type JobEnergy } from './attribution.js';
import { gpuDoctor } from './doctor.js';
import type { EnergyMeter } from './energy.js';
import { engineProcessNames, guardEnabled, yieldEnabled } from './rules.js';
import { energySection, yieldSection } from './section.js';
import { type ToolOptions, toolRunner } from './tool.js';
import { GpuWatch } from './watch.js';

export { JobAttribution, type JobEnergy } from './attribution.js';
export { EnergyMeter, type EnergyTotals } from './energy.js';
export { HeatGuard } from './heat.js';
export {
  detect,
  type Gpu,
  type GpuProcess,
  type GpuState,
  parseNvidiaApps,
  parseNvidiaGpus,
  parseRocmCards,
  parseRocmPids,
  readNvidiaSmi,
  readRocmSmi,
} from './read.js';
export { engineProcessNames, guardEnabled, yieldEnabled, yieldReason } from './rules.js';
export { type EnergySection, energySection, type YieldSection, yieldSection } from './section.js';
export { type Tariff, tariffOf } from './tariff.js';
export { type RunTool, type ToolOptions, toolRunner } from './tool.js';

export interface GpuPluginOptions {
  /** The PATH nvidia-smi and rocm-smi are looked up in (default: the agent's own). */
  path?: string;
  /** How long a GPU tool may take before it is killed (default 10 s). */
  toolTimeoutMs?: number;
  /** The most a GPU tool may print (default 1 MiB). */
  toolMaxBytes?: number;
}

/** The plugin as made here: what the ledger reads of it (issue 31). */
export type GpuPlugin = AgentPlugin & {
  readonly energy: EnergyMeter | undefined;
  /** `[energy] price_per_kwh` (USDC), once the plugin is applied. */
  readonly pricePerKwh: number | undefined;
  onJobEnergy(listener: (e: JobEnergy) => void): () => void;
};

/**
 * GPU-aware yielding (issue 19) as a feature plugin (issue 27), `[yield]`: while the owner's own programs
 * use a GPU the agent is held under `gpu`; a GPU over `max_temp_c` / `max_power_w` holds it under `heat`
 * (issue 31). Both holds are recomputed from the GPUs at every start, never persisted. `[energy]` (or a
 * `[yield]` that asks anything) measures the GPUs' energy, serving and idle. Without either section no
 * GPU tool is ever run.
 */
export default definePlugin((options: GpuPluginOptions | undefined): GpuPlugin => {
  let watch: GpuWatch | undefined;
  const jobEnergyListeners = new Set<(e: JobEnergy) => void>();
  let price: number | undefined;
  return {
    name: '@usepod-agent/plugin-gpu',
    apiVersion: 1,
    sections: ['yield', 'energy'],
    /** The energy meter while the agent runs (the ledger's per-job Wh: `energy.whBetween(from, to)`). */
    get energy(): EnergyMeter | undefined {
      return watch?.energy;
    },
    get pricePerKwh(): number | undefined {
      return price;
    },
    /**
     * Each served job's energy (Wh), told once the jobs that overlapped it have ended too (the ledger's
     * per-job column); returns a function that stops the telling.
     */
    onJobEnergy(listener: (e: JobEnergy) => void): () => void {
      jobEnergyListeners.add(listener);
      return () => {
        jobEnergyListeners.delete(listener);
      };
    },
    apply(hooks, ctx) {
      const cfg = ctx.section('yield', yieldSection);
      const energyCfg = ctx.section('energy', energySection);
      price = energyCfg?.price_per_kwh;
      const y = cfg ?? yieldSection.parse({});
      const yieldRule = cfg !== undefined && yieldEnabled(cfg);
      const guard = cfg !== undefined && guardEnabled(cfg);
      const energy = energyCfg !== undefined || yieldRule || guard;
      if (!energy) return;
      const tools: ToolOptions = {
        path: options?.path,
        timeoutMs: options?.toolTimeoutMs,
        maxBytes: options?.toolMaxBytes,
      };
      const engines = () => engineProcessNames(y, ctx.agent.configuredKinds());
      ctx.doctorCheck('gpu', () => {
        const runner = toolRunner(tools);
        return gpuDoctor({
          run: runner.run,
          yields: yieldRule || guard,
          whenOtherProcess: y.when_other_process,
          engines: engines(),
        }).finally(() => runner.stop());
      });

      // Serving vs idle energy, and each job's share: jobs from reaching a backend to their end.
      const jobs = new JobAttribution((e) => {
        // The ledger records it as the job's energy_wh (docs/hooks.md, `energy.job`).
        ctx.publish('energy.job', { jobId: e.jobId, wh: e.wh, complete: e.complete });
        for (const l of jobEnergyListeners) {
          // A listener's failure is its own: the other listeners and the attribution go on.
          try {
            l(e);
          } catch (err) {
            ctx.log.warn('a job energy listener failed', {
              error: err instanceof Error ? err.message : String(err),
            });
          }
        }
      });
      // Observed on the event stream: no `onJob` tap, so jobs keep the executor's same-turn fast path.
      hooks.onEvent.tap('gpu-energy', (e) => {
        if (e.type === 'job_start') jobs.started(e.jobId, Date.now());
        else if (e.type === 'job_end') jobs.ended(e.job.jobId, Date.now(), e.job.outputTokens);
      });

      ctx.statusSection('gpu', () => watch?.status() ?? { tools: [], read_at: null, gpus: [] });
      const runner = toolRunner(tools);
      hooks.onStart.tap('gpu', () => {
        watch = new GpuWatch({
          cfg: y,
          yieldRule,
          guard,
          energy,
          pricePerKwh: price,
          engines,
          run: runner.run,
          ctx,
          jobs,
        });
        watch.start();
      });
      hooks.onClose.tap('gpu', async () => {
        // Stopped first, so the tool killed under a poll is not taken for a failing one.
        const stopping = watch?.stop();
        runner.stop();
        await stopping;
      });
    },
  };
});
