/**
 * What parts of an undici request cost on a cold process: one request every 30 ms (idle in between, as
 * an agent is between jobs), time from `request()` to undici's request:create and request:bodySent
 * events, median of 50, three rounds per variant. `node --import tsx bench/undici-cold.ts`
 */
import dc from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { pct } from './consumer.js';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
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
await pool.close();
server.close();
