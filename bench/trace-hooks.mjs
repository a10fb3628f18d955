// BENCH_TRACE=1: loaded into the driver, the agent and the engine. Records, on CLOCK_MONOTONIC (one
// clock for every process on the machine, unlike performance.timeOrigin), each socket read and write,
// undici's request events and the agent's job milestones, so trace-report.ts can follow one job across
// the three processes.
// Tracing costs a little on every hop, on both paths alike; read its figures as a breakdown, not as
// the benchmark's results.
import dc from 'node:diagnostics_channel';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

const role = process.env.BENCH_TRACE_ROLE ?? 'driver';
const dir = process.env.BENCH_TRACE_DIR;
const events = [];
const now = () => Number(process.hrtime.bigint()) / 1e3;

globalThis.__trace = (label) => events.push([now(), `${role}.${label}`]);

// Writes are caught where they leave for the kernel (after cork/uncork), on every socket.
const sides = new WeakMap();
const tag = (socket) => `${sides.get(socket) ?? '?'}:${socket.localPort}>${socket.remotePort}`;
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function traced(writev, data, encoding, cb) {
  const size = writev ? data.reduce((n, d) => n + d.chunk.length, 0) : data.length;
  events.push([now(), `${role}.write ${tag(this)} ${size}`]);
  return writeGeneric.call(this, writev, data, encoding, cb);
};
function watch(socket, side) {
  sides.set(socket, side);
  socket.prependListener('data', (b) => events.push([now(), `${role}.read ${tag(socket)} ${b.length}`]));
}
dc.subscribe('net.client.socket', ({ socket }) => watch(socket, 'c'));
dc.subscribe('net.server.socket', ({ socket }) => watch(socket, 's'));
for (const name of [
  'undici:request:create',
  'undici:client:sendHeaders',
  'undici:request:bodySent',
  'undici:request:headers',
])
  dc.subscribe(name, () => events.push([now(), `${role}.${name.slice(7)}`]));
// The agent's own milestones (packages/core/src/observability/diagnostics.ts).
for (const name of ['received', 'request', 'response'])
  dc.subscribe(`usepod:job:${name}`, () => events.push([now(), `${role}.job:${name}`]));

export const save = () => {
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${role}-${process.pid}.json`), JSON.stringify(events));
};
process.on('exit', save);
process.on('SIGTERM', () => process.exit(0));
