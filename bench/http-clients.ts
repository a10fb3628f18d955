/**
 * Which HTTP client reads engine streams fastest: `undici.request`, `fetch`,
 * or the openai SDK's raw response. Same engine (in its own process), same
 * consumer; measured: time to first byte, and client CPU per chunk at
 * 256 streams x 100 tokens/s. `node --import tsx bench/http-clients.ts`
 */
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { Agent, Pool, request } from 'undici';
import { pct, StreamConsumer } from './consumer.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const child = fork(here('./engine-process.ts'), ['100'], { execArgv: ['--import', 'tsx'] });
process.on('exit', () => child.kill('SIGKILL'));
const { url } = await new Promise<{ url: string }>((r) =>
  child.once('message', (m) => r(m as { url: string })),
);
const body = (n: number) =>
  JSON.stringify({
    model: 'bench/model',
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: n,
    stream: true,
  });
/** The same chat request for every client: POST with a JSON body. */
const post = (n: number) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/json' },
  body: body(n),
});
/** The same consumer loop for every client (fetch and the SDK yield Uint8Arrays, copied as before). */
async function drain(stream: AsyncIterable<Uint8Array>, c: StreamConsumer): Promise<void> {
  for await (const chunk of stream)
    c.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk), performance.now());
}
const pool = new Agent({ connections: 1024 });
const originPool = new Pool(url, { connections: 1024 });
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1024 });
const rawFree: net.Socket[] = [];
const sdk = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'bench', maxRetries: 0 });

type Client = (c: StreamConsumer, n: number) => Promise<void>;
const clients: Record<string, Client> = {
  'undici.request': async (c, n) => {
    const res = await request(`${url}/v1/chat/completions`, { dispatcher: pool, ...post(n) });
    await drain(res.body, c);
  },
  'undici Agent.request({origin, path})': async (c, n) => {
    const res = await pool.request({ origin: url, path: '/v1/chat/completions', ...post(n) });
    await drain(res.body, c);
  },
  // No Readable: undici's handler hands each body chunk over in the parser's callback (decision 0008).
  'undici Agent.dispatch (handler, no Readable)': (c, n) =>
    new Promise<void>((resolve, reject) => {
      pool.dispatch(
        { origin: url, path: '/v1/chat/completions', ...post(n) },
        {
          onConnect() {},
          onHeaders: () => true,
          onData: (chunk: Buffer) => {
            c.push(chunk, performance.now());
            return true;
          },
          onComplete: () => resolve(),
          onError: reject,
        },
      );
    }),
  'undici Pool.request({ path })': async (c, n) => {
    const res = await originPool.request({ path: '/v1/chat/completions', ...post(n) });
    await drain(res.body, c);
  },
  'node:http (keep-alive agent)': async (c, n) => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const { body: text, ...options } = post(n);
      const req = http.request(`${url}/v1/chat/completions`, { agent: keepAlive, ...options });
      req.on('response', resolve).on('error', reject);
      req.end(text);
    });
    await drain(res, c);
  },
  // Not a client: the floor any client sits on (a prebuilt request written to a kept-alive socket, the
  // answer's bytes handed on as they come, its end found by the chunked terminator). Decision 0008 asks
  // what a hand-written client could buy at most; this is that bound, never shipped.
  'raw socket (floor, not a client)': (c, n) =>
    new Promise<void>((resolve, reject) => {
      const sock = rawFree.pop() ?? net.connect(Number(new URL(url).port), '127.0.0.1').setNoDelay(true);
      const text = body(n);
      let seenHead = false;
      let tail = '';
      const onData = (b: Buffer): void => {
        let chunk = b;
        if (!seenHead) {
          const at = b.indexOf('\r\n\r\n');
          if (at === -1) return;
          seenHead = true;
          chunk = b.subarray(at + 4);
        }
        if (chunk.length) c.push(chunk, performance.now());
        tail = (tail + chunk.toString('latin1')).slice(-7);
        if (tail.endsWith('0\r\n\r\n')) {
          sock.off('data', onData).off('error', reject);
          rawFree.push(sock);
          resolve();
        }
      };
      sock.on('data', onData).once('error', reject);
      sock.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    }),
  fetch: async (c, n) => {
    const res = await fetch(`${url}/v1/chat/completions`, post(n));
    await drain(res.body as unknown as AsyncIterable<Uint8Array>, c);
  },
  'openai SDK (asResponse)': async (c, n) => {
    const res = await sdk.chat.completions
      .create({
        model: 'bench/model',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: n,
        stream: true,
      })
      .asResponse();
    await drain(res.body as unknown as AsyncIterable<Uint8Array>, c);
  },
};

const results: Record<string, unknown>[] = [];
// BENCH_CLIENTS=a,b: only those clients (names as above), e.g. to alternate two in one machine hour.
const only = process.env.BENCH_CLIENTS?.split(',');
const order = Object.entries(clients).filter(([name]) => !only || only.some((o) => name.startsWith(o)));
for (const [name, client] of [...order, ...(process.env.BENCH_TWICE ? order : [])]) {
  for (let i = 0; i < 20; i++) await client(new StreamConsumer([]), 1); // warm-up
  const ttfb: number[] = [];
  for (let i = 0; i < 200; i++) {
    const c = new StreamConsumer([]);
    const t0 = performance.now();
    await client(c, 1);
    ttfb.push(c.firstByteAt! - t0);
  }
  const cpu0 = process.cpuUsage();
  const consumers = Array.from({ length: 256 }, () => new StreamConsumer([]));
  const t0 = performance.now();
  await Promise.all(consumers.map((c) => client(c, 400)));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const chunks = consumers.reduce((n, c) => n + c.chunks, 0);
  const row = {
    client: name,
    ttfb_p50_ms: Math.round(pct(ttfb, 50) * 1000) / 1000,
    ttfb_p99_ms: Math.round(pct(ttfb, 99) * 1000) / 1000,
    chunks_per_sec: Math.round(chunks / wall),
    client_cpu_us_per_chunk: Math.round(((cpu.user + cpu.system) / chunks) * 100) / 100,
    lost: consumers.reduce((n, c) => n + c.lost, 0),
  };
  process.stderr.write(`${JSON.stringify(row)}\n`);
  results.push(row);
}
if (!only)
  writeFileSync(
    here('./results/http-clients.json'),
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2)}\n`,
  );
child.kill();
await pool.close();
process.exit(0);
