import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { clock } from './consumer.js';

/**
 * A batching engine for the benchmark: every tick it writes one chat chunk to
 * every active stream, as vLLM's scheduler emits one token per running sequence
 * per step. Each chunk carries its emit time and sequence number, so the
 * consumer measures latency and loss without parsing JSON. It answers the
 * probes of the vLLM plugin, and records its own ceiling (chunks per second of
 * its busy time) and when clients closed streams early.
 */
interface Stream {
  id: number;
  res: ServerResponse;
  remaining: number;
  seq: number;
  done: boolean;
  blockedWrites: number;
}

export class BatchEngine {
  readonly #server: Server;
  readonly #streams = new Set<Stream>();
  #nextId = 1;
  #timer: NodeJS.Timeout | undefined;
  #tickMs = 10;
  #nextTickAt = 0;
  /** Chunks written, and the busy time spent writing them. */
  written = 0;
  busyMs = 0;
  blockedWrites = 0;
  /** Resolvers waiting for a client to close a stream early, with when it closed. */
  onAbort: ((at: number) => void) | undefined;
  readonly model = 'bench/model';

  constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.keepAliveTimeout = 60_000;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get active(): number {
    return this.#streams.size;
  }

  /** Streams whose socket refused a write (the reader is not keeping up). */
  get pausedStreams(): number {
    let n = 0;
    for (const s of this.#streams) if (s.res.writableNeedDrain) n++;
    return n;
  }

  /** Tokens per second per stream. */
  setRate(tokensPerSec: number): void {
    this.#tickMs = 1000 / tokensPerSec;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#nextTickAt = performance.now();
      this.#schedule();
    }
  }

  run(): void {
    this.#nextTickAt = performance.now();
    this.#schedule();
  }

  #schedule(): void {
    this.#nextTickAt += this.#tickMs;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, this.#nextTickAt - performance.now()));
  }

  #tick(): void {
    const started = performance.now();
    const at = clock();
    for (const s of this.#streams) this.#emit(s, at);
    this.busyMs += performance.now() - started;
    // A tick that overran the interval is not caught up with a burst.
    if (this.#nextTickAt < performance.now() - this.#tickMs) this.#nextTickAt = performance.now();
    this.#schedule();
  }

  #emit(s: Stream, now: number): void {
    if (s.done) return;
    const t = now.toFixed(3);
    if (s.remaining > 0) {
      const ok = s.res.write(
        `data: {"id":"chatcmpl-b${s.id}","object":"chat.completion.chunk","created":1,"model":"${this.model}","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}],"t":${t},"s":${s.seq++}}\n\n`,
      );
      if (!ok) {
        s.blockedWrites++;
        this.blockedWrites++;
      }
      s.remaining--;
      this.written++;
      return;
    }
    s.done = true;
    this.#streams.delete(s);
    s.res.end(
      `data: {"id":"chatcmpl-b${s.id}","object":"chat.completion.chunk","created":1,"model":"${this.model}","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"t":${t},"s":${s.seq++}}\n\ndata: {"id":"chatcmpl-b${s.id}","object":"chat.completion.chunk","created":1,"model":"${this.model}","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":${s.seq - 1},"total_tokens":${s.seq + 9}},"t":${t},"s":${s.seq++}}\n\ndata: [DONE]\n\n`,
    );
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const json = (status: number, v: unknown) => {
      const body = JSON.stringify(v);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    };
    if (req.method === 'GET') {
      // Just enough of vLLM's surface for the vLLM plugin's probes.
      if (req.url === '/health') res.writeHead(200, { 'content-length': 0 }).end();
      else if (req.url === '/version') json(200, { version: '0.30.0' });
      else if (req.url === '/v1/models')
        json(200, { object: 'list', data: [{ id: this.model, object: 'model', max_model_len: 32768 }] });
      else if (req.url === '/metrics') res.writeHead(200, { 'content-type': 'text/plain' }).end('');
      else json(404, { detail: 'Not Found' });
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { max_tokens?: number };
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      const s: Stream = {
        id: this.#nextId++,
        res,
        remaining: body.max_tokens ?? 16,
        seq: 0,
        done: false,
        blockedWrites: 0,
      };
      res.on('close', () => {
        if (!s.done) {
          s.done = true;
          this.#streams.delete(s);
          this.onAbort?.(clock());
        }
      });
      this.#streams.add(s);
      // The first token leaves after prefill, not at the next batch step.
      this.#emit(s, clock());
    });
  }

  /** Chunks per second this engine could write, from its busy time. */
  ceiling(): number {
    return this.busyMs > 0 ? Math.round(this.written / (this.busyMs / 1000)) : 0;
  }

  resetCounters(): void {
    this.written = 0;
    this.busyMs = 0;
    this.blockedWrites = 0;
  }

  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
