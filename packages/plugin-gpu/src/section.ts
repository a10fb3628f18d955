import { z } from 'zod';

/**
 * `[yield]` (issue 19): the agent steps aside while a process other than its engines uses a GPU, or free
 * VRAM falls under a floor, and comes back after `cooldown_s` of quiet. Read through nvidia-smi and rocm-smi.
 */
export const yieldSection = z.strictObject({
  when_other_process: z.boolean().default(false),
  min_free_vram_mb: z.number().int().min(0).optional(),
  /** Pause while another process is on a GPU and the GPU is busier than this, percent. */
  max_other_util_pct: z.number().min(0).max(100).optional(),
  cooldown_s: z.number().min(0).max(86_400).default(60),
  poll_s: z.number().min(0.1).max(3600).default(5),
  /** Process names (substrings) that are the engines; default: what the configured kinds' plugins say. */
  engine_processes: z.array(z.string().min(1)).optional(),
});
export type YieldSection = z.output<typeof yieldSection>;
