import type { ChildProcess } from 'node:child_process';

/**
 * Ends a child started with `detached: true` together with everything it started: on Unix it leads a
 * process group of its own, and the group is signalled, so a shell wrapper's or an install script's
 * children go with it (they would otherwise outlive it, and may hold its output open). Windows has no
 * process groups: the child alone. Never throws (a child already gone is fine).
 */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    if (process.platform !== 'win32' && child.pid !== undefined) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    child.kill(signal);
  }
}
