import { engineText } from '@usepod-agent/core';
import type { RunTool } from './tool.js';

/**
 * What the GPU tools say, read as untrusted input (issue 28): a figure the tool does not know (`[N/A]`,
 * `[Not Supported]`, anything unparsable or out of range) is undefined, never 0, and the rules skip it; a
 * process name (any local user chooses it) is folded (`engineText`: no control character) and cut; at
 * most MAX_GPUS GPUs and MAX_PROCESSES processes are taken.
 */
export const MAX_GPUS = 64;
export const MAX_PROCESSES = 256;
export const MAX_NAME = 200;

export interface GpuProcess {
  pid: number | undefined;
  /** Folded; undefined when the tool could not tell (`[N/A]`, `[Not Found]` in a container). */
  name: string | undefined;
  usedMb: number | undefined;
  /** The GPU it runs on (nvidia-smi's `gpu_uuid`); absent when the tool does not say (rocm-smi). */
  gpuUuid?: string;
}

export interface Gpu {
  /** Which tool saw it, and its index there. */
  tool: 'nvidia-smi' | 'rocm-smi';
  index: number;
  name: string | undefined;
  utilPct: number | undefined;
  freeMb: number | undefined;
  totalMb: number | undefined;
  powerW: number | undefined;
  powerLimitW: number | undefined;
  tempC: number | undefined;
  /** nvidia-smi's `uuid`, to find the processes on it; absent when unknown. */
  uuid?: string;
}

export interface GpuState {
  processes: GpuProcess[];
  gpus: Gpu[];
}

/** A decimal figure within [min, max], else unknown. */
export function figure(v: unknown, min: number, max: number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= min && v <= max ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (!/^-?\d+(\.\d+)?$/.test(s)) return undefined;
  const n = Number(s);
  return n >= min && n <= max ? n : undefined;
}

const MB = 1e8; // 100 TB: more than any GPU has
const pct = (v: unknown) => figure(v, 0, 100);
const mb = (v: unknown) => figure(v, 0, MB);
const watts = (v: unknown) => figure(v, 0, 100_000);
const celsius = (v: unknown) => figure(v, -50, 300);
/** A whole number within [min, max], else unknown. */
const whole = (v: unknown, min: number, max: number) => {
  const n = figure(v, min, max);
  return n !== undefined && Number.isInteger(n) ? n : undefined;
};
const pidOf = (v: unknown) => whole(v, 1, 2 ** 32);
/** A GPU's index as its tool gives it, bounded; else its place in the tool's answer. */
const indexOf = (v: unknown, place: number) => whole(v, 0, 1024) ?? place;

/** A process or GPU name from a tool: folded and cut; `[N/A]`-like placeholders are unknown. */
export function nameOf(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const s = engineText(v, MAX_NAME).trim();
  if (s === '' || /^\[[^\]]*\]$/.test(s)) return undefined;
  return s;
}

const csv = (text: string, max: number) =>
  text
    .split('\n', max * 4)
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, max)
    .map((l) => l.split(',').map((c) => c.trim()));

// The GPU's uuid is the last column of both queries (issue 31: which engines a hot GPU runs), so that an
// output without it (an older tool, a script) still parses: a last field that is no uuid is none.
export const NVIDIA_APPS = [
  '--query-compute-apps=pid,process_name,used_memory,gpu_uuid',
  '--format=csv,noheader,nounits',
];
export const NVIDIA_GPUS = [
  '--query-gpu=index,utilization.gpu,memory.free,memory.total,power.draw,power.limit,temperature.gpu,name,uuid',
  '--format=csv,noheader,nounits',
];

/** `GPU-8f6c...` (or a MIG device's `MIG-...`): checked, as any tool output, before it is kept. */
const UUID = /^(GPU|MIG)-[0-9A-Za-z-]{1,80}$/;

/** Takes a trailing uuid off the fields, if the last one is one. */
function uuidOff(f: string[], min: number): string | undefined {
  const last = f.at(-1);
  if (f.length <= min || last === undefined || !UUID.test(last)) return undefined;
  f.pop();
  return last;
}

export function parseNvidiaApps(text: string): GpuProcess[] {
  // A name may hold commas (a path); the first and last fields are numbers (then the uuid, if any).
  return csv(text, MAX_PROCESSES).map((f) => {
    const gpuUuid = uuidOff(f, 3);
    return {
      pid: pidOf(f[0]),
      name: nameOf(f.slice(1, -1).join(',')),
      usedMb: mb(f.at(-1)),
      ...(gpuUuid ? { gpuUuid } : {}),
    };
  });
}

export function parseNvidiaGpus(text: string): Gpu[] {
  return csv(text, MAX_GPUS).map((f, i) => {
    const uuid = uuidOff(f, 8);
    return {
      tool: 'nvidia-smi',
      index: indexOf(f[0], i),
      utilPct: pct(f[1]),
      freeMb: mb(f[2]),
      totalMb: mb(f[3]),
      powerW: watts(f[4]),
      powerLimitW: watts(f[5]),
      tempC: celsius(f[6]),
      name: nameOf(f.slice(7).join(',')),
      ...(uuid ? { uuid } : {}),
    };
  });
}

export async function readNvidiaSmi(run: RunTool): Promise<GpuState> {
  const apps = await run('nvidia-smi', NVIDIA_APPS);
  const gpus = await run('nvidia-smi', NVIDIA_GPUS);
  return { processes: parseNvidiaApps(apps), gpus: parseNvidiaGpus(gpus) };
}

export const ROCM_PIDS = ['--showpids', '--json'];
export const ROCM_CARDS = [
  '--showmeminfo',
  'vram',
  '--showuse',
  '--showpower',
  '--showmaxpower',
  '--showtemp',
  '--json',
];

const object = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function json(text: string, cmd: string): Record<string, unknown> {
  try {
    return object(JSON.parse(text));
  } catch {
    throw Object.assign(new Error(`${cmd} printed something that is not JSON`), { code: 'EPARSE' });
  }
}

/**
 * rocm-smi (AMD): `--showpids --json` gives `{"system": {"PID<n>": "name, gpus, vram bytes, sdma, cu
 * occupancy"}}` (no GPU per process); the cards' query gives `{"card<n>": {"GPU use (%)", "VRAM Total
 * Memory (B)", "VRAM Total Used Memory (B)", "... Graphics Package Power (W)", "Temperature (Sensor edge)
 * (C)"}}`. Other keys of "system" are messages ("No KFD PIDs currently running").
 */
export function parseRocmPids(text: string): GpuProcess[] {
  const system = object(json(text, 'rocm-smi').system);
  return Object.entries(system)
    .filter(([k, v]) => /^PID\d+$/.test(k) && typeof v === 'string')
    .slice(0, MAX_PROCESSES)
    .map(([k, v]) => {
      const f = (v as string).split(',').map((c) => c.trim());
      const bytes = figure(f[2], 0, MB * 1_048_576);
      return {
        pid: pidOf(k.slice(3)),
        name: nameOf(f[0]),
        usedMb: bytes === undefined ? undefined : Math.round(bytes / 1_048_576),
      };
    });
}

export function parseRocmCards(text: string): Gpu[] {
  return Object.entries(json(text, 'rocm-smi'))
    .filter(([k, v]) => /^card\d+$/.test(k) && v !== null && typeof v === 'object')
    .slice(0, MAX_GPUS)
    .map(([k, v], i) => {
      const c = object(v);
      const bytes = (key: string) => figure(c[key], 0, MB * 1_048_576);
      const total = bytes('VRAM Total Memory (B)');
      const used = bytes('VRAM Total Used Memory (B)');
      const totalMb = total === undefined ? undefined : Math.round(total / 1_048_576);
      const usedMb = used === undefined ? undefined : Math.round(used / 1_048_576);
      // The names changed across releases: "Average ..." (older), "Current Socket ..." (MI300 and later).
      const power = Object.keys(c).find(
        (key) => /Graphics Package Power \(W\)$/.test(key) && !/^Max/.test(key),
      );
      const temp = ['Temperature (Sensor edge) (C)', 'Temperature (Sensor junction) (C)'].find(
        (key) => celsius(c[key]) !== undefined,
      );
      return {
        tool: 'rocm-smi',
        // Bounded like nvidia-smi's: a card number no machine has (card99999999999999999999) is its place.
        index: indexOf(k.slice(4), i),
        name: nameOf(c['Card series'] ?? c['Card model']),
        utilPct: pct(c['GPU use (%)']),
        totalMb,
        freeMb: totalMb !== undefined && usedMb !== undefined ? Math.max(0, totalMb - usedMb) : undefined,
        powerW: power ? watts(c[power]) : undefined,
        powerLimitW: watts(c['Max Graphics Package Power (W)']),
        tempC: temp ? celsius(c[temp]) : undefined,
      };
    });
}

export async function readRocmSmi(run: RunTool): Promise<GpuState> {
  const pids = await run('rocm-smi', ROCM_PIDS);
  const cards = await run('rocm-smi', ROCM_CARDS);
  return { processes: parseRocmPids(pids), gpus: parseRocmCards(cards) };
}

export type Reader = (run: RunTool) => Promise<GpuState>;

export const READERS: readonly [string, Reader][] = [
  ['nvidia-smi', readNvidiaSmi],
  ['rocm-smi', readRocmSmi],
];

export function merge(states: GpuState[]): GpuState {
  return {
    processes: states.flatMap((s) => s.processes).slice(0, MAX_PROCESSES),
    gpus: states.flatMap((s) => s.gpus).slice(0, MAX_GPUS),
  };
}

export interface Detected {
  /** The tools that answered. */
  tools: string[];
  /** Reads every GPU those tools see (a machine may have both). */
  read: () => Promise<GpuState>;
  /** What detection read: the first poll's state (the tools are not asked twice). */
  first: GpuState;
}

/**
 * Which of nvidia-smi and rocm-smi this machine has, tried once; throws the first line of each tool's
 * failure when none answers, `absent` when none is there at all.
 */
export async function detect(
  run: RunTool,
  readers: readonly [string, Reader][] = READERS,
): Promise<Detected> {
  const tried = await Promise.allSettled(readers.map(([, r]) => r(run)));
  const working = readers.filter((_, i) => tried[i]!.status === 'fulfilled');
  if (working.length === 0) {
    const errors = tried.map((t) => (t as PromiseRejectedResult).reason as Error & { code?: string });
    throw Object.assign(new Error(errors.map((e) => e.message.split('\n')[0]).join('; ')), {
      absent: errors.every((e) => e.code === 'ENOENT'),
    });
  }
  return {
    tools: working.map(([name]) => name),
    read: async () => merge(await Promise.all(working.map(([, r]) => r(run)))),
    first: merge(tried.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []))),
  };
}
