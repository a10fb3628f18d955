/**
 * `node --import tsx bench/gpu-attribution.ts`: how long the GPU plugin's energy share-out holds the event
 * loop (and so the relay) when a GPU tool that failed for hours answers again and the jobs it left
 * waiting (up to 10,000) are shared out in one interval. Quadratic before (0.65 s for 10,000 here), one
 * sweep since (plugin-gpu's attribution.ts; the test checks what each job is told, not the time).
 */
import { JobAttribution } from '@usepod-agent/plugin-gpu';

function backlog(n: number): number {
  let told = 0;
  const a = new JobAttribution(() => told++);
  a.interval(0, 5_000, 100, true);
  a.polled(5_000);
  for (let i = 0; i < n; i++) {
    a.started(`j${i}`, 6_000 + i * 3_000);
    a.ended(`j${i}`, 8_000 + i * 3_000 + (i % 7), 50);
  }
  const t1 = 10_000 + n * 3_000;
  const from = performance.now();
  a.interval(5_000, t1, 1e6, true);
  a.polled(t1);
  const ms = performance.now() - from;
  if (told !== n) throw new Error(`${told} of ${n} jobs told`);
  return ms;
}

backlog(1_000); // compiled before it is timed
for (const n of [1_000, 10_000]) {
  const runs = [0, 1, 2].map(() => backlog(n)).sort((x, y) => x - y);
  process.stdout.write(`${n} jobs waiting: share-out ${runs.map((ms) => ms.toFixed(1)).join(' / ')} ms\n`);
}
