import { describe, expect, it } from 'vitest';
import { engineProcessNames, type GpuState, yieldReason } from './gpu.js';
import { yieldSection } from './section.js';

const cfg = (y: Record<string, unknown>) => yieldSection.parse(y);
/** What the llama.cpp plugin declares (BackendKind.processNames). */
const ENGINES = ['llama-server'];
const engineOnly: GpuState = {
  processes: [{ pid: 1, name: '/usr/bin/llama-server', usedMb: 9000 }],
  gpus: [{ utilPct: 95, freeMb: 1000, totalMb: 24576 }],
};
const withTrainer: GpuState = {
  ...engineOnly,
  processes: [...engineOnly.processes, { pid: 7, name: '/home/me/venv/bin/python train.py', usedMb: 8000 }],
};

describe('yieldReason: when the agent steps aside', () => {
  it('leaves its own engines alone, and names another process', () => {
    expect(yieldReason(cfg({ when_other_process: true }), ENGINES, engineOnly)).toBeUndefined();
    expect(yieldReason(cfg({ when_other_process: true }), ENGINES, withTrainer)).toBe(
      'python train.py (pid 7) uses a GPU',
    );
  });

  it('knows an engine by the 15-character comm rocm-smi reports', () => {
    const rocm: GpuState = {
      processes: [{ pid: 3, name: 'my-inference-se', usedMb: 9000 }],
      gpus: [{ utilPct: 50, freeMb: 9000, totalMb: 24576 }],
    };
    expect(yieldReason(cfg({ when_other_process: true }), ['my-inference-server'], rocm)).toBeUndefined();
    expect(yieldReason(cfg({ when_other_process: true }), ['llama-server'], rocm)).toMatch(/my-inference-se/);
  });

  it('steps aside under a free-VRAM floor, and when a GPU another process is on is busier than allowed', () => {
    expect(yieldReason(cfg({ min_free_vram_mb: 2048 }), ENGINES, engineOnly)).toBe(
      'a GPU has 1000 MiB free, under min_free_vram_mb 2048',
    );
    expect(yieldReason(cfg({ max_other_util_pct: 50 }), ENGINES, engineOnly)).toBeUndefined();
    expect(yieldReason(cfg({ max_other_util_pct: 50 }), ENGINES, withTrainer)).toMatch(
      /^a GPU is 95% busy with python/,
    );
  });

  it('takes the engines’ process names from the plugins of the configured kinds, or the config', () => {
    const kinds = [{ processNames: ['VLLM', 'vllm'] }];
    expect(engineProcessNames(cfg({}), kinds)).toEqual(['VLLM', 'vllm']);
    expect(engineProcessNames(cfg({ engine_processes: ['my-engine'] }), kinds)).toEqual(['my-engine']);
  });
});
