import type { AgentBackend } from '@usepod-agent/core';
import type { Gpu, GpuProcess } from './read.js';
import { isEngine } from './rules.js';

/**
 * Which configured backends run on some GPUs (issue 31: the heat guard withdraws a hot GPU's engines
 * only). The engine processes on each GPU (nvidia-smi's `gpu_uuid`) name the backend kinds whose
 * declared process names they match, and so the backends of those kinds: two backends of one kind cannot
 * be told apart, so both are taken. Undefined when it cannot be told: a GPU without a uuid, a tool that
 * gives no GPU per process (rocm-smi), no engine process seen on it, or no backend found; the caller
 * then holds the whole agent.
 */
export function backendsOn(
  gpus: readonly Gpu[],
  processes: readonly GpuProcess[],
  kinds: readonly { kind: string; processNames: readonly string[] }[],
  backends: readonly AgentBackend[],
): string[] | undefined {
  const onThem = new Set<string>();
  for (const g of gpus) {
    if (g.uuid === undefined) return undefined;
    const names = processes.filter((p) => p.gpuUuid === g.uuid && p.name !== undefined).map((p) => p.name!);
    const found = kinds.filter((k) => names.some((n) => isEngine(k.processNames, n)));
    if (found.length === 0) return undefined;
    for (const k of found) onThem.add(k.kind);
  }
  const held = backends.filter((b) => onThem.has(b.kind)).map((b) => b.label);
  return held.length > 0 ? held : undefined;
}
