import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import openaiPlugin from '@usepod-agent/plugin-openai-compatible';
import {
  type CoordinatorSession,
  createTestAgent,
  OpenAIEmulator,
  type TestAgent,
} from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * Failover to the next backend of a model (PROTOCOL.md 5.4): only while the first engine began no answer.
 * One that sent a byte of an answer, then dropped, may have run the job (a remote API bills it): the job
 * ends there and the next engine never sees it.
 */

const MODEL = 'openai/gpt-oss-20b';
const hi = { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5 };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface RawEngine {
  url: string;
  server: Server;
  sockets: Set<Socket>;
  /** Chat requests it received. */
  jobs: number;
}

/**
 * The first engine, on a bare `net` server: it lists MODEL (and closes), and answers each whole chat
 * request with `onJob`, which writes what it likes on the socket.
 */
async function rawEngine(onJob: (s: Socket) => void): Promise<RawEngine> {
  const sockets = new Set<Socket>();
  const e: RawEngine = { url: '', server: createServer(), sockets, jobs: 0 };
  e.server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      buf = Buffer.alloc(0);
      if (head.startsWith('GET /v1/models ')) {
        const body = JSON.stringify({ object: 'list', data: [{ id: MODEL }] });
        s.end(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
        );
      } else if (head.startsWith('POST /v1/chat/completions ')) {
        e.jobs++;
        onJob(s);
      } else {
        s.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      }
    });
  });
  e.server.listen(0, '127.0.0.1');
  await once(e.server, 'listening');
  const address = e.server.address();
  e.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1`;
  cleanup.push(async () => {
    for (const s of sockets) s.destroy();
    if (e.server.listening) await new Promise((r) => e.server.close(r));
  });
  return e;
}

/** Writes `bytes`, then drops the connection once they left. */
const partial = (bytes: string) => (s: Socket) => void s.write(bytes, () => s.destroy());

/** An agent with the raw engine first and an emulated API second, both serving MODEL. */
async function serve(
  first: RawEngine,
): Promise<{ t: TestAgent; session: CoordinatorSession; second: OpenAIEmulator }> {
  const second = await new OpenAIEmulator().start();
  const t = await createTestAgent({
    plugins: [openaiPlugin],
    logLevel: 'warn',
    config: {
      backends: [
        { kind: 'openai', url: first.url, name: 'first' },
        { kind: 'openai', url: `${second.url}/v1`, name: 'second' },
      ],
    },
  });
  cleanup.push(async () => {
    await t.close();
    await second.close();
  });
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await t.coordinator.firstAuthenticated();
  await session.capabilities();
  return { t, session, second };
}

const jobsOn = (e: OpenAIEmulator) =>
  e.requests.items.filter((q) => q.path === '/v1/chat/completions').length;

describe('an engine that began its answer, then dropped', () => {
  it.each([
    ['a status line', 'HTTP/1.1 200 OK\r\n', /began its answer, then dropped the connection: ECONNRESET/],
    [
      'part of the headers',
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-enc',
      /began its answer, then dropped the connection: ECONNRESET/,
    ],
    ['a 100 Continue', 'HTTP/1.1 100 Continue\r\n\r\n', /began its answer, then dropped the connection/],
    [
      'the headers of a 200, no body byte',
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n',
      /backend stream/,
    ],
  ])('(%s) ends the job internal, and the next engine gets no request', async (_what, bytes, message) => {
    const first = await rawEngine(partial(bytes));
    const { t, session, second } = await serve(first);
    const ended = await session.dispatch({ model_id: MODEL, request: hi }).done();
    expect(ended).toMatchObject({ type: 'job_error', error_code: 'internal', tokens_emitted: 0 });
    expect(String(ended.message)).toMatch(message);
    expect(first.jobs).toBe(1);
    expect(jobsOn(second)).toBe(0);
    expect(t.lines.some((l) => l.includes('trying the next one'))).toBe(false);
  });
});

const loading = '{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}';

describe('an engine that began no answer', () => {
  it.each([
    ['closes the connection without a byte', (s: Socket) => void s.destroy()],
    [
      "answers llama.cpp's 503 Loading model",
      partial(
        `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${loading.length}\r\n\r\n${loading}`,
      ),
    ],
  ])('%s: the job fails over to the next engine', async (_what, onJob) => {
    const first = await rawEngine(onJob);
    const { t, session, second } = await serve(first);
    const done = await session.dispatch({ model_id: MODEL, request: hi }).done();
    expect(done.type).toBe('job_done');
    expect(first.jobs).toBe(1);
    expect(jobsOn(second)).toBe(1);
    expect(t.lines.some((l) => l.includes('trying the next one') && l.includes('first'))).toBe(true);
  });

  it('refuses the connection: the job fails over to the next engine', async () => {
    const first = await rawEngine(partial('HTTP/1.1 200 OK\r\n'));
    const { session, second } = await serve(first);
    // Listed healthy by the first probe, then gone: nothing listens on its port any more.
    await new Promise((r) => first.server.close(r));
    for (const s of first.sockets) s.destroy();
    const done = await session.dispatch({ model_id: MODEL, request: hi }).done();
    expect(done.type).toBe('job_done');
    expect(first.jobs).toBe(0);
    expect(jobsOn(second)).toBe(1);
  });
});
