import { execFile } from 'node:child_process';
import type { Logger } from '@usepod-agent/core';
import type { YieldSection } from './section.js';

/**
 * GPU-aware yielding (issue 19, `[yield]`): every `poll_s` it asks `nvidia-smi` (and `rocm-smi`) which processes use the
 * GPUs and how much memory is free; a process that is not one of the engines (a game, a training run), or
 * free VRAM under `min_free_vram_mb`, pauses the agent; `cooldown_s` without either resumes it. A pause of
 * the owner's own (or of quiet hours) is never lifted here. Without `nvidia-smi` the feature says once
 * that it is unavailable and stops; it never throws.
 */
export interface GpuState {
  /** Compute processes: name and the GPU memory each uses (MiB). */
  processes: { pid: number; name: string; usedMb: number }[];
  gpus: { utilPct: number; freeMb: number; totalMb: number }[];
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 10_000, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      // What the tool said is the useful part ("couldn't communicate with the NVIDIA driver").
      const said = String(stderr).trim().split('\n')[0]?.slice(0, 200);
      if (said && (err as NodeJS.ErrnoException).code !== 'ENOENT') err.message = `${cmd}: ${said}`;
      reject(err);
    }),
  );
}

const csv = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => l.split(',').map((c) => c.trim()));

/** Reads both queries; numbers it cannot read count as 0 (an "[N/A]" on consumer cards). */
export async function readNvidiaSmi(): Promise<GpuState> {
  const apps = await run('nvidia-smi', [
    '--query-compute-apps=pid,process_name,used_memory',
    '--format=csv,noheader,nounits',
  ]);
  const gpus = await run('nvidia-smi', [
    '--query-gpu=utilization.gpu,memory.free,memory.total',
    '--format=csv,noheader,nounits',
  ]);
  const num = (s: string | undefined) => (Number.isFinite(Number(s)) ? Number(s) : 0);
  return {
    // A name may hold commas only in a path; the first and last fields are numbers.
    processes: csv(apps).map((f) => ({
      pid: num(f[0]),
      name: f.slice(1, -1).join(',').slice(0, 200),
      usedMb: num(f.at(-1)),
    })),
    gpus: csv(gpus).map((f) => ({ utilPct: num(f[0]), freeMb: num(f[1]), totalMb: num(f[2]) })),
  };
}

/**
 * The same from `rocm-smi` (AMD): `--showpids --json` gives `{"system": {"PID<n>": "name, gpus, vram
 * bytes, sdma, cu occupancy"}}` (no GPU index per process), `--showmeminfo vram --showuse --json` gives
 * `{"card<n>": {"GPU use (%)", "VRAM Total Memory (B)", "VRAM Total Used Memory (B)"}}`.
 */
export async function readRocmSmi(): Promise<GpuState> {
  const pids = JSON.parse(await run('rocm-smi', ['--showpids', '--json'])) as { system?: unknown };
  const cards = JSON.parse(await run('rocm-smi', ['--showmeminfo', 'vram', '--showuse', '--json'])) as Record<
    string,
    unknown
  >;
  const num = (s: unknown) => (Number.isFinite(Number(s)) ? Number(s) : 0);
  const mib = (bytes: unknown) => Math.round(num(bytes) / 1_048_576);
  const system =
    pids.system && typeof pids.system === 'object' ? (pids.system as Record<string, unknown>) : {};
  return {
    // Other keys of "system" are messages ("No KFD PIDs currently running").
    processes: Object.entries(system)
      .filter(([k, v]) => /^PID\d+$/.test(k) && typeof v === 'string')
      .map(([k, v]) => {
        const f = (v as string).split(',').map((c) => c.trim());
        return { pid: Number(k.slice(3)), name: (f[0] ?? '').slice(0, 200), usedMb: mib(f[2]) };
      }),
    gpus: Object.entries(cards)
      .filter(([k, v]) => /^card\d+$/.test(k) && v !== null && typeof v === 'object')
      .map(([, v]) => {
        const c = v as Record<string, unknown>;
        const totalMb = mib(c['VRAM Total Memory (B)']);
        return {
          utilPct: num(c['GPU use (%)']),
          totalMb,
          freeMb: Math.max(0, totalMb - mib(c['VRAM Total Used Memory (B)'])),
        };
      }),
  };
}

type Reader = () => Promise<GpuState>;

/**
 * Which of `nvidia-smi` and `rocm-smi` this machine has, tried once: a reader of every GPU they see
 * (a machine may have both), or the first one's error when neither runs.
 */
export async function detectGpuReader(
  readers: readonly [string, Reader][] = [
    ['nvidia-smi', readNvidiaSmi],
    ['rocm-smi', readRocmSmi],
  ],
): Promise<{ read: Reader; tools: string[]; first: GpuState }> {
  const tried = await Promise.allSettled(readers.map(([, r]) => r()));
  const working = readers.filter((_, i) => tried[i]!.status === 'fulfilled');
  if (working.length === 0) {
    // "not found" for a tool that is absent; the first line of what went wrong for one that is there.
    const errors = tried.map((t) => (t as PromiseRejectedResult).reason as NodeJS.ErrnoException);
    const why = readers.map(
      ([name], i) =>
        `${name}: ${errors[i]!.code === 'ENOENT' ? 'not found' : String(errors[i]!.message).split('\n')[0]}`,
    );
    // Absent tools will not appear; a tool that is there but failed may answer at the next poll.
    throw Object.assign(new Error(why.join('; ')), { absent: errors.every((e) => e.code === 'ENOENT') });
  }
  const merge = (states: GpuState[]): GpuState => ({
    processes: states.flatMap((s) => s.processes),
    gpus: states.flatMap((s) => s.gpus),
  });
  const read: Reader = async () => merge(await Promise.all(working.map(([, r]) => r())));
  // What detection read is the first poll's state: the tools are not asked twice.
  const first = merge(tried.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : [])));
  return { read, tools: working.map(([name]) => name), first };
}

/** Why the agent should step aside now, or undefined. */
export function yieldReason(cfg: YieldSection, engines: readonly string[], s: GpuState): string | undefined {
  // rocm-smi names a process by its `comm`, which Linux cuts at 15 characters.
  const isEngine = (name: string) =>
    engines.some((e) => name.includes(e) || (name.length === 15 && e.startsWith(name)));
  const others = s.processes.filter((p) => !isEngine(p.name));
  const other = others[0];
  if (cfg.when_other_process && other) {
    return `${basename(other.name)} (pid ${other.pid}) uses a GPU`;
  }
  if (cfg.max_other_util_pct !== undefined && other) {
    const busy = s.gpus.find((g) => g.utilPct > (cfg.max_other_util_pct ?? 100));
    if (busy) return `a GPU is ${busy.utilPct}% busy with ${basename(other.name)} on it`;
  }
  if (cfg.min_free_vram_mb !== undefined) {
    const low = s.gpus.find((g) => g.freeMb < (cfg.min_free_vram_mb ?? 0));
    if (low) return `a GPU has ${low.freeMb} MiB free, under min_free_vram_mb ${cfg.min_free_vram_mb}`;
  }
  return undefined;
}

function basename(name: string): string {
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

/** Whether `[yield]` asks for anything (else nvidia-smi is never run and no engine names are needed). */
export function yieldEnabled(cfg: YieldSection): boolean {
  return cfg.when_other_process || cfg.min_free_vram_mb !== undefined || cfg.max_other_util_pct !== undefined;
}

/** What GPU yielding holds the agent with: the `gpu` hold. */
export interface Holder {
  hold(name: string, opts: { reason: string }): void;
  release(name: string): void;
}

export function startGpuYield(
  holder: Holder,
  cfg: YieldSection,
  engines: readonly string[],
  log: Logger,
  detect: () => Promise<{ read: Reader; tools: string[]; first: GpuState }> = detectGpuReader,
): () => void {
  if (!yieldEnabled(cfg)) return () => {};
  let ours: string | undefined;
  let quietSince: number | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let read: Reader | undefined;
  let failing = false;
  const tick = async () => {
    let state: GpuState;
    try {
      if (!read) {
        const found = await detect();
        read = found.read;
        log.info('GPU-aware yielding on', { tools: found.tools.join(',') });
        state = found.first;
      } else {
        state = await read();
      }
      if (failing) log.info('GPU-aware yielding reads the GPUs again');
      failing = false;
    } catch (err) {
      const e = err as Error & { absent?: boolean };
      if (e.absent) {
        log.warn(
          'GPU-aware yielding is unavailable: neither nvidia-smi nor rocm-smi is here; [yield] is ignored',
          {
            error: e.message.split('\n')[0],
          },
        );
        stopped = true;
        return;
      }
      // A tool that timed out or failed once (a busy driver) is asked again at the next poll, said once.
      if (!failing) {
        log.warn('GPU state could not be read; trying again every poll', { error: e.message.split('\n')[0] });
      }
      failing = true;
      return;
    }
    const why = yieldReason(cfg, engines, state);
    if (why) {
      quietSince = undefined;
      const reason = `GPU in use: ${why}`;
      if (ours !== reason) holder.hold('gpu', { reason });
      ours = reason;
    } else if (ours !== undefined) {
      quietSince ??= Date.now();
      if (Date.now() - quietSince >= cfg.cooldown_s * 1000) {
        ours = undefined;
        quietSince = undefined;
        holder.release('gpu');
      }
    }
  };
  const loop = async () => {
    await tick();
    if (!stopped) timer = setTimeout(loop, cfg.poll_s * 1000);
  };
  void loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
