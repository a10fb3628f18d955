import type { AddressInfo, Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { verifySignature } from '../packages/core/src/identity/identity.js';
import { clock, type StreamConsumer } from './consumer.js';

/**
 * A lean coordinator for the benchmark: the real handshake, then job dispatch
 * and a fast path for job_chunk frames (sliced, not JSON-parsed) so the driver
 * itself is not the bottleneck. The testkit coordinator records every frame,
 * which is right for tests and wrong at 100,000 frames per second.
 */
const CHUNK_PREFIX = '{"type":"job_chunk","job_id":"';
const DATA_AT = CHUNK_PREFIX.length + 36 + '","data":"'.length;
// The Rust agent 0.3.3 builds frames with serde_json's default (sorted) maps: data, job_id, type.
const SORTED_PREFIX = '{"data":"';
const SORTED_ID = '","job_id":"';
const SORTED_TAIL = '","type":"job_chunk"}';

interface Job {
  consumer: StreamConsumer;
  done: (frame: Record<string, unknown>) => void;
}

export class BenchCoordinator {
  readonly #wss: WebSocketServer;
  #ws: WebSocket | undefined;
  readonly #jobs = new Map<string, Job>();
  #ready: Promise<void>;
  #onReady!: () => void;
  frames = 0;
  /** When the agent's capabilities frame arrived (performance.now()): the agent is online. */
  onlineAt: number | undefined;

  constructor() {
    this.#wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: '/provider/connect',
      perMessageDeflate: false,
    });
    this.#ready = new Promise((r) => {
      this.#onReady = r;
    });
    this.#wss.on('connection', (ws) => this.#connection(ws));
  }

  async listening(): Promise<string> {
    if (!this.#wss.address()) await new Promise((r) => this.#wss.once('listening', r));
    return `ws://127.0.0.1:${(this.#wss.address() as AddressInfo).port}/provider/connect`;
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  #connection(ws: WebSocket): void {
    this.#ws = ws;
    const nonce = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37) & 255));
    ws.send(JSON.stringify({ type: 'auth_challenge', nonce: nonce.toString('base64') }));
    ws.on('message', (data: Buffer) => {
      const now = clock();
      const text = data.toString('latin1');
      if (text.startsWith(CHUNK_PREFIX)) {
        this.frames++;
        const job = this.#jobs.get(text.slice(CHUNK_PREFIX.length, CHUNK_PREFIX.length + 36));
        job?.consumer.push(Buffer.from(text.slice(DATA_AT, -2), 'base64'), now);
        return;
      }
      if (text.startsWith(SORTED_PREFIX) && text.endsWith(SORTED_TAIL)) {
        const end = text.length - SORTED_TAIL.length;
        const dataEnd = end - 36 - SORTED_ID.length;
        this.frames++;
        const job = this.#jobs.get(text.slice(end - 36, end));
        job?.consumer.push(Buffer.from(text.slice(SORTED_PREFIX.length, dataEnd), 'base64'), now);
        return;
      }
      const f = JSON.parse(text) as Record<string, unknown>;
      if (f.type === 'job_chunk') {
        this.frames++;
        this.#jobs.get(String(f.job_id))?.consumer.push(Buffer.from(String(f.data), 'base64'), now);
      } else if (f.type === 'auth_response') {
        const ok = verifySignature(nonce, String(f.signature), String(f.pubkey));
        ws.send(
          JSON.stringify(
            ok
              ? { type: 'auth_ok', provider_id: 'prov_bench' }
              : { type: 'auth_failed', reason: 'bad signature' },
          ),
        );
      } else if (f.type === 'capabilities') {
        this.onlineAt ??= performance.now();
        this.#onReady();
      } else if (f.type === 'job_done' || f.type === 'job_error') {
        const job = this.#jobs.get(String(f.job_id));
        this.#jobs.delete(String(f.job_id));
        job?.done(f);
      }
    });
  }

  dispatch(
    jobId: string,
    consumer: StreamConsumer,
    maxTokens: number,
    content = 'bench',
  ): Promise<Record<string, unknown>> {
    return new Promise((done) => {
      this.#jobs.set(jobId, { consumer, done });
      this.#ws!.send(
        JSON.stringify({
          type: 'job',
          job_id: jobId,
          model_id: 'bench/model',
          request: { messages: [{ role: 'user', content }], max_tokens: maxTokens },
          deadline_ms: 600_000,
        }),
      );
    });
  }

  /** Round trip of a WebSocket ping to the agent process and its pong: the cost of one hop each way. */
  async pingRtt(): Promise<number> {
    const ws = this.#ws!;
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ws.once('pong', () => resolve());
      ws.ping();
    });
    return performance.now() - t0;
  }

  cancel(jobId: string): void {
    this.#jobs.delete(jobId);
    this.#ws!.send(JSON.stringify({ type: 'job_cancel', job_id: jobId }));
  }

  #socket(): Socket {
    return (this.#ws as unknown as { _socket: Socket })._socket;
  }

  pauseReading(): void {
    this.#socket().pause();
  }

  resumeReading(): void {
    this.#socket().resume();
  }

  async close(): Promise<void> {
    for (const c of this.#wss.clients) c.terminate();
    await new Promise((r) => this.#wss.close(r));
  }
}
