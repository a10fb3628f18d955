import { definePlugin } from '@usepod-agent/core';
import { engineProcessNames, startGpuYield, yieldEnabled } from './gpu.js';
import { yieldSection } from './section.js';

export {
  detectGpuReader,
  engineProcessNames,
  type GpuState,
  readNvidiaSmi,
  readRocmSmi,
  yieldEnabled,
  yieldReason,
} from './gpu.js';
export { type YieldSection, yieldSection } from './section.js';

/**
 * GPU-aware yielding (issue 19) as a feature plugin (issue 27): `[yield]`. While the owner's own programs
 * use a GPU the agent is held paused under `gpu`; the hold is recomputed from the GPUs at every start,
 * never persisted. Without `[yield]` (or with nothing asked of it) no GPU tool is ever run.
 */
export default definePlugin(() => ({
  name: '@usepod-agent/plugin-gpu',
  apiVersion: 1,
  sections: ['yield'],
  apply(hooks, ctx) {
    const cfg = ctx.section('yield', yieldSection);
    if (!cfg || !yieldEnabled(cfg)) return;
    let stop: (() => void) | undefined;
    hooks.onStart.tap('gpu', () => {
      const engines = engineProcessNames(cfg, ctx.agent.configuredKinds());
      stop = startGpuYield(ctx, cfg, engines, ctx.log);
    });
    hooks.onClose.tap('gpu', () => stop?.());
  },
}));
