import { PerformanceObserver } from 'node:perf_hooks';

/** A garbage collection: when it started (epoch ms, comparable across the bench's processes), how long. */
export type Gc = [at: number, ms: number, kind?: number];

/**
 * Records this process's garbage collections from now on, for lane A's slow-round report. The agent
 * worker keeps its own copy of these lines: it runs as plain JavaScript, without a TypeScript loader.
 */
export function recordGcs(): Gc[] {
  const gcs: Gc[] = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs.push([
        performance.timeOrigin + e.startTime,
        e.duration,
        (e as { detail?: { kind?: number } }).detail?.kind,
      ]);
    }
  }).observe({ entryTypes: ['gc'] });
  return gcs;
}
