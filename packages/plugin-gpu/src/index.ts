import { definePlugin } from '@usepod-agent/core';
import { gpuDoctor } from './doctor.js';
import type { EnergyMeter } from './energy.js';
import { engineProcessNames, guardEnabled, yieldEnabled } from './rules.js';
import { energySection, yieldSection } from './section.js';
import { type ToolOptions, toolRunner } from './tool.js';
import { GpuWatch } from './watch.js';

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
export { type RunTool, type ToolOptions, toolRunner } from './tool.js';

export interface GpuPluginOptions {
  /** The PATH nvidia-smi and rocm-smi are looked up in (default: the agent's own). */
  path?: string;
  /** How long a GPU tool may take before it is killed (default 10 s). */
  toolTimeoutMs?: number;
  /** The most a GPU tool may print (default 1 MiB). */
  toolMaxBytes?: number;
}

/** Jobs in flight kept for serving-vs-idle energy: more than any agent runs at once. */
const MAX_TRACKED_JOBS = 10_000;

/**
 * GPU-aware yielding (issue 19) as a feature plugin (issue 27), `[yield]`: while the owner's own programs
 * use a GPU the agent is held under `gpu`; a GPU over `max_temp_c` / `max_power_w` holds it under `heat`
 * (issue 31). Both holds are recomputed from the GPUs at every start, never persisted. `[energy]` (or a
 * `[yield]` that asks anything) measures the GPUs' energy, serving and idle. Without either section no
 * GPU tool is ever run.
 */
export default definePlugin((options: GpuPluginOptions | undefined) => {
  let watch: GpuWatch | undefined;
  return {
    name: '@usepod-agent/plugin-gpu',
    apiVersion: 1,
    sections: ['yield', 'energy'],
    /** The energy meter while the agent runs (the ledger's per-job Wh: `energy.whBetween(from, to)`). */
    get energy(): EnergyMeter | undefined {
      return watch?.energy;
    },
    apply(hooks, ctx) {
      const cfg = ctx.section('yield', yieldSection);
      const energyCfg = ctx.section('energy', energySection);
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

      // Serving vs idle energy: jobs that reached a backend until their end.
      const inFlight = new Set<string>();
      let lastEnd = 0;
      hooks.onJob.tap('gpu-energy', ({ frame }) => {
        if (inFlight.size < MAX_TRACKED_JOBS) inFlight.add(frame.job_id);
        return undefined;
      });
      hooks.onEvent.tap('gpu-energy', (e) => {
        if (e.type !== 'job_end') return;
        inFlight.delete(e.job.jobId);
        lastEnd = Date.now();
      });

      ctx.statusSection('gpu', () => watch?.status() ?? { tools: [], read_at: null, gpus: [] });
      const runner = toolRunner(tools);
      hooks.onStart.tap('gpu', () => {
        watch = new GpuWatch({
          cfg: y,
          yieldRule,
          guard,
          energy,
          engines,
          run: runner.run,
          ctx,
          busySince: (t) => inFlight.size > 0 || lastEnd >= t,
        });
        watch.start();
      });
      hooks.onClose.tap('gpu', async () => {
        runner.stop();
        await watch?.stop();
      });
    },
  };
});
