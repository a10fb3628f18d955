/**
 * What a paused relay holds: 256 streams at 200 tokens/s, the coordinator stops reading, and the
 * agent's live heap and buffers (after GC) are printed each second. `node --import tsx bench/pause-memory.ts`
 * For a heap snapshot at the plateau, send the worker `{ cmd: 'snapshot', file }`.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { StreamConsumer } from './consumer.js';
import { BenchCoordinator } from './coordinator.js';
import { BatchEngine } from './engine.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const engine = new BatchEngine();
const engineUrl = await engine.start();
engine.setRate(200);
engine.run();
const coord = new BenchCoordinator();
const url = await coord.listening();
const child = fork(here('./agent-worker.mjs'), [], { execArgv: ['--expose-gc'] });
process.on('exit', () => child.kill('SIGKILL'));
const q: ((m: unknown) => void)[] = [];
child.on('message', (m) => q.shift()?.(m));
interface Usage {
  heap: number;
  external: number;
  outbound: number;
}
const ask = (m: object) =>
  new Promise<Usage>((r) => {
    q.push(r as (m: unknown) => void);
    child.send(m);
  });
await ask({ cmd: 'start', coordinator: url, engine: engineUrl });
await coord.ready();
const cs = Array.from({ length: 256 }, () => new StreamConsumer([]));
for (const c of cs) void coord.dispatch(randomUUID(), c, 1e9);
while (cs.some((c) => c.chunks < 5)) await new Promise((r) => setTimeout(r, 10));
const base = await ask({ cmd: 'gc' });
coord.pauseReading();
for (let i = 0; i < 6; i++) {
  await new Promise((r) => setTimeout(r, 1000));
  const u = await ask({ cmd: 'gc' });
  console.log(
    i,
    'live MB',
    ((u.heap + u.external - base.heap - base.external) / 1e6).toFixed(1),
    'out',
    (u.outbound / 1e6).toFixed(2),
  );
}
process.exit(0);
