import type { GpuState } from './read.js';
import type { YieldSection } from './section.js';

/**
 * The yield rule (issue 19): why the agent should step aside now, or undefined. Figures a tool did not
 * know are skipped (issue 28: `[N/A]` free memory never reads as 0 MiB free), and so are processes whose
 * name the tool could not tell (an engine in another container shows as `[Not Found]`).
 */
export function yieldReason(cfg: YieldSection, engines: readonly string[], s: GpuState): string | undefined {
  const others = s.processes.filter((p) => p.name !== undefined && !isEngine(engines, p.name));
  const other = others[0];
  if (cfg.when_other_process && other) {
    return `${basename(other.name!)} (pid ${other.pid ?? '?'}) uses a GPU`;
  }
  if (cfg.max_other_util_pct !== undefined && other) {
    const max = cfg.max_other_util_pct;
    const busy = s.gpus.find((g) => g.utilPct !== undefined && g.utilPct > max);
    if (busy) return `a GPU is ${busy.utilPct}% busy with ${basename(other.name!)} on it`;
  }
  if (cfg.min_free_vram_mb !== undefined) {
    const min = cfg.min_free_vram_mb;
    const low = s.gpus.find((g) => g.freeMb !== undefined && g.freeMb < min);
    if (low) return `a GPU has ${low.freeMb} MiB free, under min_free_vram_mb ${min}`;
  }
  return undefined;
}

/** rocm-smi names a process by its `comm`, which Linux cuts at 15 characters. */
export function isEngine(engines: readonly string[], name: string): boolean {
  return engines.some((e) => name.includes(e) || (name.length === 15 && e.startsWith(name)));
}

export function basename(name: string): string {
  return name.split(/[\\/]/).at(-1) || name;
}

/**
 * The engines' process names: `[yield] engine_processes`, else what the plugins of the configured kinds
 * declare (`BackendKind.processNames`).
 */
export function engineProcessNames(
  cfg: YieldSection,
  kinds: readonly { processNames: readonly string[] }[],
): string[] {
  if (cfg.engine_processes) return cfg.engine_processes;
  return [...new Set(kinds.flatMap((k) => k.processNames))];
}

/** Whether `[yield]` asks the yield rule for anything. */
export function yieldEnabled(cfg: YieldSection): boolean {
  return cfg.when_other_process || cfg.min_free_vram_mb !== undefined || cfg.max_other_util_pct !== undefined;
}

/** Whether `[yield]` asks for the heat and power guard. */
export function guardEnabled(cfg: YieldSection): boolean {
  return cfg.max_temp_c !== undefined || cfg.max_power_w !== undefined;
}
