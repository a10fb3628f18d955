/**
 * What parts of an undici request cost on a cold process: one request every 30 ms (idle in between, as
 * an agent is between jobs), time from `request()` to undici's request:create and request:bodySent
 * events, median of 50, three rounds per variant. Then the time to the first body byte through
 * `request()` (a Readable) and through `dispatch()` with a handler (no Readable, no promise).
 * `node --import tsx bench/undici-cold.ts`
 */
import dc from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { pct } from './consumer.js';

// Headers first, the body in the next turn, as an engine answers a streaming request.
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    setImmediate(() => res.end('data: {"x":1}\n\ndata: [DONE]\n\n'));
  });
}).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const pool = new Agent({ keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
let createdAt = 0;
let sentAt = 0;
dc.subscribe('undici:request:create', () => {
  createdAt = performance.now();
});
dc.subscribe('undici:request:bodySent', () => {
  sentAt = performance.now();
});

const body = '{"model":"m","messages":[{"role":"user","content":"bench"}],"max_tokens":5,"stream":true}';
const headers = { accept: 'text/event-stream', 'content-type': 'application/json' };
const base = { origin, path: '/v1/chat/completions', method: 'POST' as const, body, highWaterMark: 16_384 };
const variants: Record<string, () => Dispatcher.RequestOptions> = {
  'headers + AbortSignal': () => ({ ...base, headers, signal: new AbortController().signal }),
  'headers, no signal': () => ({ ...base, headers }),
  'headers + EventEmitter signal': () => ({ ...base, headers, signal: new EventEmitter() }),
  'no headers + AbortSignal': () => ({ ...base, signal: new AbortController().signal }),
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rows: Record<string, string[]> = {};
for (let round = 0; round < 3; round++) {
  for (const [name, make] of Object.entries(variants)) {
    const create: number[] = [];
    const sent: number[] = [];
    for (let i = 0; i < 60; i++) {
      await sleep(30);
      const t0 = performance.now();
      const res = await pool.request(make());
      await res.body.dump();
      if (i < 10) continue;
      create.push((createdAt - t0) * 1000);
      sent.push((sentAt - t0) * 1000);
    }
    rows[name] = [...(rows[name] ?? []), `${pct(create, 50).toFixed(0)} / ${pct(sent, 50).toFixed(0)}`];
  }
}
process.stdout.write('µs from request() to request:create / to request:bodySent (median), three rounds\n');
for (const [name, v] of Object.entries(rows)) process.stdout.write(`${name.padEnd(32)} ${v.join('   ')}\n`);

const opts = () => ({ ...base, headers, signal: new EventEmitter() });
const firstByte: Record<string, () => Promise<number>> = {
  'request() + readable': async () => {
    const t0 = performance.now();
    const res = await pool.request(opts());
    let first = 0;
    await new Promise<void>((resolve) => {
      res.body.on('readable', () => {
        while (res.body.read() !== null) first ||= performance.now();
      });
      res.body.on('end', resolve);
    });
    return first - t0;
  },
  'dispatch() + handler': () =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      let first = 0;
      pool.dispatch(opts(), {
        // undici 7's handler API, told apart from the old one by these.
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {
          first ||= performance.now();
        },
        onResponseEnd: () => resolve(first - t0),
        onResponseError: (_c, err) => reject(err),
      });
    }),
};
const firstRows: Record<string, string[]> = {};
for (let round = 0; round < 3; round++) {
  for (const [name, run] of Object.entries(firstByte)) {
    const t: number[] = [];
    for (let i = 0; i < 60; i++) {
      await sleep(30);
      const ms = await run();
      if (i >= 10) t.push(ms * 1000);
    }
    firstRows[name] = [...(firstRows[name] ?? []), pct(t, 50).toFixed(0)];
  }
}
process.stdout.write('µs from the call to the first body byte (median), three rounds\n');
for (const [name, v] of Object.entries(firstRows))
  process.stdout.write(`${name.padEnd(32)} ${v.join('   ')}\n`);
await pool.close();
server.close();
