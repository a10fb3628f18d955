import { checkTimezone, parseWindow } from '@usepod-agent/core';
import { z } from 'zod';

/** A refinement from a checker that throws the line to show (the `[schedule]` grammar's). */
const checked = (check: (v: string) => unknown) =>
  z.string().superRefine((v, ctx) => {
    try {
      check(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

/**
 * `[yield]` (issue 19): the agent steps aside while a process other than its engines uses a GPU, or free
 * VRAM falls under a floor, and comes back after `cooldown_s` of quiet. Read through nvidia-smi and rocm-smi.
 * Issue 31 adds the heat and power guard: over `max_temp_c` or `max_power_w` two polls in a row, the
 * agent is held (`heat`) until the GPU has stayed `cooldown_s` under the limit (less `resume_below_c`).
 */
export const yieldSection = z.strictObject({
  when_other_process: z.boolean().default(false),
  min_free_vram_mb: z.number().int().min(0).optional(),
  /** Pause while another process is on a GPU and the GPU is busier than this, percent. */
  max_other_util_pct: z.number().min(0).max(100).optional(),
  cooldown_s: z.number().min(0).max(86_400).default(60),
  poll_s: z.number().min(0.1).max(3600).default(5),
  /** Process names (substrings) that are the engines; default: what the configured kinds' plugins say. */
  engine_processes: z.array(z.string().min(1).max(200)).max(64).optional(),
  /** Hold the agent while a GPU is hotter than this, °C. */
  max_temp_c: z.number().min(20).max(150).optional(),
  /** Hold the agent while a GPU draws more than this, watts. */
  max_power_w: z.number().min(1).max(10_000).optional(),
  /** How far under `max_temp_c` a GPU must cool before the hold lifts, °C. */
  resume_below_c: z.number().min(0).max(50).default(5),
});
export type YieldSection = z.output<typeof yieldSection>;

/**
 * `[energy]` (issue 31): the GPUs' power is measured (usepod_agent_energy_joules_total, serving and idle)
 * even when nothing is asked of `[yield]`; `price_per_kwh` (USDC) is what `earnings` prices energy at,
 * and `[[energy.tariff]]` periods (`when = "Mon-Fri 17:00-21:00"`, the `[schedule]` grammar, in
 * `timezone`) have prices of their own (tariff.ts).
 */
export const energySection = z.strictObject({
  price_per_kwh: z.number().min(0).max(100).optional(),
  timezone: checked(checkTimezone).optional(),
  tariff: z
    .array(z.strictObject({ when: checked(parseWindow), price_per_kwh: z.number().min(0).max(100) }))
    .max(64)
    .default([]),
});
export type EnergySection = z.output<typeof energySection>;
