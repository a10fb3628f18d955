import type { DoctorFinding } from '@usepod-agent/core';
import { detect } from './read.js';
import { basename, isEngine } from './rules.js';
import type { RunTool } from './tool.js';

/**
 * `usepod-agent doctor`'s `gpu` lines: the tools are asked once (with or without the agent running). A
 * `[yield]` with no tool to read it, a tool that fails, and engines the yield rule would not recognise on
 * the GPUs (it would step aside for its own engine) are each a warning with what to do.
 */
export async function gpuDoctor(o: {
  run: RunTool;
  /** Whether the yield rule or the heat guard is asked for (else only energy is). */
  yields: boolean;
  whenOtherProcess: boolean;
  engines: readonly string[];
}): Promise<DoctorFinding[]> {
  let found: Awaited<ReturnType<typeof detect>>;
  try {
    found = await detect(o.run);
  } catch (err) {
    const e = err as Error & { absent?: boolean };
    if (e.absent) {
      return [
        {
          name: 'gpu',
          level: 'warn',
          detail: o.yields
            ? '[yield] is set but neither nvidia-smi nor rocm-smi is here: the agent will not step aside for the GPU'
            : 'neither nvidia-smi nor rocm-smi is here: no energy is measured',
          fix: 'install the GPU driver’s tools (nvidia-smi, rocm-smi) on the PATH, or remove [yield]',
        },
      ];
    }
    return [
      {
        name: 'gpu',
        level: 'warn',
        detail: `the GPU tool fails: ${e.message}`,
        fix: 'check the GPU driver: `nvidia-smi` (or `rocm-smi`) should list the GPUs',
      },
    ];
  }
  const { gpus, processes } = found.first;
  const figures = gpus
    .slice(0, 8)
    .map((g) => {
      const parts = [
        g.tempC === undefined ? undefined : `${g.tempC} °C`,
        g.powerW === undefined ? undefined : `${g.powerW} W`,
        g.powerLimitW === undefined ? undefined : `limit ${g.powerLimitW} W`,
      ].filter(Boolean);
      return `GPU ${g.index}${parts.length ? ` ${parts.join(', ')}` : ''}`;
    })
    .join('; ');
  const out: DoctorFinding[] = [
    {
      name: 'gpu',
      level: 'ok',
      detail: `${found.tools.join(' and ')}: ${gpus.length} GPU${gpus.length === 1 ? '' : 's'}${figures ? ` (${figures})` : ''}`,
    },
  ];
  if (!o.whenOtherProcess) return out;
  const named = processes.filter((p) => p.name !== undefined);
  if (o.engines.length === 0) {
    out.push({
      name: 'gpu',
      level: 'warn',
      detail:
        'the configured engines declare no process names: any process on a GPU, the engine too, pauses the agent',
      fix: 'set [yield] engine_processes to the engines’ process names as nvidia-smi shows them',
    });
  } else if (!named.some((p) => isEngine(o.engines, p.name!))) {
    const seen = [...new Set(named.map((p) => basename(p.name!)))].slice(0, 5);
    out.push({
      name: 'gpu',
      level: 'warn',
      detail: `no engine process (${o.engines.join(', ')}) is on a GPU${seen.length ? `; seen: ${seen.join(', ')}` : ''}`,
      fix: 'start the engine, or set [yield] engine_processes to its process name as the GPU tool shows it',
    });
  }
  return out;
}
