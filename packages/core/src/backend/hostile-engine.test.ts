import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../observability/log.js';
import { AbortRelay } from '../relay/abort-relay.js';
import { readChunks } from '../relay/read-chunks.js';
import { createPool, type EnginePool, getJson, readText, send } from './http.js';
import { OpenAICompatibleBackend } from './openai-compatible.js';

/**
 * The engine as an attacker, or as a broken program, on raw TCP: whatever bytes it sends, the client
 * ends each request (an answer or an error, never a wait for the job's deadline), never sends a job
 * twice once the engine began answering, and leaves no socket or listener behind.
 */

const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=60\r\n\r\nok';

interface RawEngine {
  url: string;
  /** Requests received, connections accepted, and those still open. */
  requests: number;
  connections: number;
  readonly open: Set<Socket>;
}

const servers: (Server | HttpServer)[] = [];
const closers: { destroy?(): Promise<void>; close?(): Promise<void> }[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await (c.destroy ?? c.close)!.call(c);
  for (const s of servers.splice(0)) {
    if ('closeAllConnections' in s) s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function pool(): EnginePool {
  const p = createPool();
  closers.push(p);
  return p;
}

/** An engine that reads each request (head and content-length body) and answers with `answer`. */
async function rawEngine(answer: (socket: Socket, n: number) => void): Promise<RawEngine> {
  const e: RawEngine = { url: '', requests: 0, connections: 0, open: new Set() };
  const server = createServer((s) => {
    e.connections++;
    e.open.add(s);
    s.on('close', () => e.open.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const length = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.slice(end + 4 + length);
        answer(s, ++e.requests);
      }
    });
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  e.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return e;
}

/** A signal that aborts after `ms`: what the job's deadline would do, much later. */
function within(ms: number): AbortSignal {
  const c = new AbortController();
  setTimeout(() => c.abort(new Error(`still waiting after ${ms} ms`)), ms).unref();
  return c.signal;
}

/** Reads a body to its end: `end`, or the error's message. */
function drain(body: Readable): Promise<string> {
  return readChunks(body, () => true).then(
    () => 'end',
    (err: Error) => err.message,
  );
}

describe('an engine that answers with something other than a response', () => {
  it('fails the request at once when the engine switches protocols (101 and bytes after it)', async () => {
    // Node hands the connection to an `upgrade` listener or drops it, with no response and no error:
    // without a listener for that close, the job waited for its deadline.
    const e = await rawEngine((s) =>
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nhello'),
    );
    await expect(
      send(pool(), `${e.url}/v1/chat/completions`, { method: 'POST', body: '{}', signal: within(3_000) }),
    ).rejects.toMatchObject({
      code: 'USEPOD_BACKEND_HTTP',
      message: expect.stringContaining('closed the connection without an answer'),
    });
  });

  it.each([
    ['a status line that is not HTTP', '\x00\x01 garbage\r\n\r\n', 'Expected HTTP/'],
    [
      'content-length and chunked at once',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      "Transfer-Encoding can't be present with Content-Length",
    ],
    [
      'two content-lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok',
      'Duplicate Content-Length',
    ],
    [
      'a content-length past 2^64',
      'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok',
      'Content-Length overflow',
    ],
  ])('fails the request on %s, and keeps no connection', async (_what, bytes, why) => {
    const e = await rawEngine((s) => s.write(bytes));
    await expect(
      send(pool(), e.url, { method: 'POST', body: '{}', signal: within(3_000) }),
    ).rejects.toMatchObject({
      code: 'USEPOD_BACKEND_HTTP',
      message: expect.stringContaining(why),
    });
    await expect.poll(() => e.open.size).toBe(0);
  });

  it('fails the request on headers that never end, once they pass 16 KiB', async () => {
    const e = await rawEngine((s) => {
      s.write('HTTP/1.1 200 OK\r\n');
      const t = setInterval(() => s.write(`X-Pad: ${'a'.repeat(1000)}\r\n`), 1);
      s.on('close', () => clearInterval(t));
    });
    await expect(send(pool(), e.url, { method: 'GET', signal: within(3_000) })).rejects.toMatchObject({
      code: 'USEPOD_BACKEND_HTTP',
      message: expect.stringContaining('Header overflow'),
    });
    await expect.poll(() => e.open.size).toBe(0);
  });

  it('passes over 1xx answers (103 Early Hints, an unasked 100 Continue) to the response after them', async () => {
    const e = await rawEngine((s) =>
      s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n${ok}`),
    );
    const res = await send(pool(), e.url, { method: 'POST', body: '{}', signal: within(3_000) });
    expect([res.status, await readText(res.body)]).toEqual([200, 'ok']);
  });
});

describe('an engine that closes or garbles the body', () => {
  it.each([
    [
      'a chunked body closed before its last chunk',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
      'end',
      'aborted',
    ],
    [
      'a content-length body closed short',
      'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello',
      'end',
      'aborted',
    ],
    [
      'a chunked body reset in a chunk',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel',
      'reset',
      'aborted',
    ],
    [
      'a chunk size that is not hex',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n',
      'none',
      'aborted',
    ],
    [
      'a chunk size past 2^64',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n',
      'none',
      'aborted',
    ],
    ['a body that lasts until the close (no length)', 'HTTP/1.1 200 OK\r\n\r\nhello', 'end', 'end'],
  ])('%s: the body ends or fails, never waits', async (_what, bytes, close, result) => {
    const e = await rawEngine((s) => {
      s.write(bytes);
      if (close === 'end') setTimeout(() => s.end(), 20);
      if (close === 'reset') setTimeout(() => s.resetAndDestroy(), 20);
    });
    const res = await send(pool(), e.url, { method: 'POST', body: '{}', signal: within(3_000) });
    expect(await drain(res.body)).toBe(result);
    await expect.poll(() => e.open.size).toBe(0);
  });

  it('fails a body whose trailers never end', async () => {
    const e = await rawEngine((s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n');
      const t = setInterval(() => s.write(`X-Trailer: ${'a'.repeat(1000)}\r\n`), 1);
      s.on('close', () => clearInterval(t));
    });
    const res = await send(pool(), e.url, { method: 'POST', body: '{}', signal: within(3_000) });
    expect(await drain(res.body)).toBe('aborted');
  });
});

describe('sending a job again', () => {
  it.each([
    ['a status line', 'HTTP/1.1 200 OK\r\n'],
    ['a 100 Continue', 'HTTP/1.1 100 Continue\r\n\r\n'],
  ])(
    'never sends it again once the engine began answering on a kept-alive connection (%s)',
    async (_what, begun) => {
      // The engine read the job and began its answer: a second copy would run it twice (on a remote API,
      // billed twice). Only a connection that answered nothing may have been closed while it sat idle.
      const e = await rawEngine((s, n) => {
        if (n === 1) return void s.write(ok);
        s.write(begun);
        setTimeout(() => s.destroy(), 20);
      });
      const p = pool();
      expect(await readText((await send(p, e.url, { method: 'GET' })).body)).toBe('ok');
      await expect(
        send(p, `${e.url}/v1/chat/completions`, { method: 'POST', body: '{}', signal: within(3_000) }),
      ).rejects.toMatchObject({ code: 'USEPOD_BACKEND_STREAM' });
      expect(e.requests).toBe(2);
    },
  );

  it('a new connection the engine began answering, then dropped, is not unreachable: no other engine may get the job', async () => {
    const e = await rawEngine(
      (s) => void s.write('HTTP/1.1 200 OK\r\ncontent-type: text/ev', () => s.destroy()),
    );
    await expect(
      send(pool(), `${e.url}/v1/chat/completions`, { method: 'POST', body: '{}', signal: within(3_000) }),
    ).rejects.toMatchObject({
      code: 'USEPOD_BACKEND_STREAM',
      message: expect.stringContaining('began its answer, then dropped the connection: ECONNRESET'),
    });
    expect(e.requests).toBe(1);
  });

  it('a new connection closed before any byte of an answer is unreachable (the job may fail over)', async () => {
    const e = await rawEngine((s) => void s.destroy());
    await expect(
      send(pool(), `${e.url}/v1/chat/completions`, { method: 'POST', body: '{}', signal: within(3_000) }),
    ).rejects.toMatchObject({ code: 'USEPOD_BACKEND_UNREACHABLE' });
    expect(e.requests).toBe(1);
  });
});

describe('keep-alive', () => {
  it.each([
    ['timeout=0', 'not at all', undefined],
    ['timeout=1', 'not at all', undefined],
    ['timeout=99999999999999999999999', '30 s at most', 30_000],
    ['timeout=abc', '30 s, the default', 30_000],
    ['timeout=-5', '30 s, the default', 30_000],
    ['timeout=5', 'a second less', 4_000],
    ['max=100, timeout=5', 'a second less, whatever comes first', 4_000],
    ['Timeout=5 , max=3', 'a second less, in any case', 4_000],
  ])('Keep-Alive: %s keeps an idle connection %s', async (hint, _kept, idleMs) => {
    const e = await rawEngine((s) =>
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: ${hint}\r\n\r\nok`),
    );
    const p = pool();
    await readText((await send(p, e.url, { method: 'GET' })).body);
    await new Promise((r) => setImmediate(r));
    const free = Object.values(p.agentFor('http:').freeSockets).flat() as Socket[];
    expect(free.map((s) => s.timeout)).toEqual(idleMs === undefined ? [] : [idleMs]);
    await readText((await send(p, e.url, { method: 'GET' })).body);
    expect(e.connections).toBe(idleMs === undefined ? 2 : 1);
  });

  it('puts back no connection whose answer was not read to its end', async () => {
    const big = 'x'.repeat(100_000);
    const e = await rawEngine((s) =>
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`),
    );
    const p = pool();
    expect(await readText((await send(p, e.url, { method: 'GET' })).body, 1000)).toHaveLength(1000);
    expect(await readText((await send(p, e.url, { method: 'GET' })).body, 200_000)).toHaveLength(big.length);
    expect(await readText((await send(p, e.url, { method: 'GET' })).body, 200_000)).toHaveLength(big.length);
    // The first connection was dropped half read; the second answered in full and served the third.
    expect(e.connections).toBe(2);
  });

  it('runs 300 jobs and 300 probes on one connection with no listener piling up on it', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const server = createHttpServer((req, res) => {
        req.resume();
        if (req.url === '/v1/models') return void res.end('{"data":[]}');
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: [DONE]\n\n');
      });
      server.keepAliveTimeout = 60_000;
      servers.push(server);
      let connections = 0;
      server.on('connection', () => connections++);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const p = pool();
      const listeners = () => {
        const s = (Object.values(p.agentFor('http:').freeSockets).flat() as Socket[])[0]!;
        return Object.fromEntries(s.eventNames().map((n) => [String(n), s.listenerCount(n)]));
      };
      let after10: Record<string, number> | undefined;
      for (let i = 0; i < 300; i++) {
        // As the executor runs a job: the relay's abort passed in, fired once the body ended.
        const relay = new AbortRelay();
        const res = await send(p, `${url}/v1/chat/completions`, { method: 'POST', body: '{}', abort: relay });
        expect(await drain(res.body)).toBe('end');
        relay.abort(new Error('session'));
        await getJson(p, `${url}/v1/models`, {}, new AbortController().signal);
        await new Promise((r) => setImmediate(r));
        if (i === 10) after10 = listeners();
      }
      expect(connections).toBe(1);
      expect(listeners()).toEqual(after10);
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('leaves no connection in the pool or at the engine after aborts at any moment', async () => {
    const e = await rawEngine((s, n) => {
      if (n % 3 === 0) s.write(ok);
      else if (n % 3 === 1) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      // else: thinks forever
    });
    const p = pool();
    const when: ((abort: () => void) => void)[] = [
      (a) => a(),
      (a) => queueMicrotask(a),
      (a) => setImmediate(a),
      (a) => setTimeout(a, 5),
    ];
    for (let i = 0; i < 120; i++) {
      const relay = new AbortRelay();
      const job = send(p, e.url, { method: 'POST', body: '{}', abort: relay })
        .then((res) => drain(res.body))
        .catch(() => 'failed');
      when[i % when.length]!(() => relay.abort(new Error('cancel')));
      await job;
    }
    const agent = p.agentFor('http:');
    await expect.poll(() => Object.values(agent.sockets).flat().length).toBe(0);
    // What is left open is idle in the pool, nothing else.
    await expect.poll(() => e.open.size).toBe(Object.values(agent.freeSockets).flat().length);
    expect(e.open.size).toBeLessThanOrEqual(1);
  });
});

describe('an engine whose probe answers endlessly or slowly', () => {
  function backend(url: string, probeTimeoutMs = 1_000) {
    const b = new OpenAICompatibleBackend({ kind: 'test', url, log: silentLogger, probeTimeoutMs });
    closers.push(b);
    return b;
  }

  it('reads at most 8 MiB of an endless /v1/models, then drops the connection', async () => {
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const e = await rawEngine((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
      const pump = (): void => {
        while (!s.destroyed && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!s.write(`${chunk.length.toString(16)}\r\n${chunk.toString('latin1')}\r\n`)) {
            s.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    const status = await backend(e.url, 10_000).probe();
    expect(status).toMatchObject({ healthy: false, detail: expect.stringContaining('not JSON') });
    await expect.poll(() => e.open.size).toBe(0);
    expect(sent).toBeLessThan(32 * 1024 * 1024);
  });

  it('gives up on a /v1/models that drips, at the probe timeout', async () => {
    const e = await rawEngine((s) => {
      s.write(
        'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n',
      );
      const t = setInterval(() => s.write('1\r\n \r\n'), 50);
      s.on('close', () => clearInterval(t));
    });
    const started = Date.now();
    expect(await backend(e.url, 500).probe()).toMatchObject({
      healthy: false,
      detail: 'no answer within 500 ms',
    });
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect.poll(() => e.open.size).toBe(0);
  });

  it('leaves no request waiting on the engine after a probe that failed while it asked two things at once', async () => {
    // Ollama's probe asks /api/tags and /api/ps together: when one fails at once, the other was left
    // waiting on an engine that never answers it, one more connection every probe.
    class TwoAtOnce extends OpenAICompatibleBackend {
      protected override async listModels(signal: AbortSignal) {
        await Promise.all([this.getJson('/fails', signal), this.getJson('/never', signal)]);
        return [];
      }
    }
    const server = createHttpServer((req, res) => {
      if (req.url === '/fails') {
        res.statusCode = 500;
        res.end('{"error":"busy"}');
      }
      // /never: no answer
    });
    servers.push(server);
    const open = new Set<Socket>();
    server.on('connection', (s: Socket) => {
      open.add(s);
      s.on('close', () => open.delete(s));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const b = new TwoAtOnce({
      kind: 'test',
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      log: silentLogger,
      probeTimeoutMs: 60_000,
    });
    closers.push(b);
    for (let i = 0; i < 5; i++) expect((await b.probe()).healthy).toBe(false);
    // The failed request's connection may stay for the next probe; none waits on /never.
    await expect.poll(() => open.size).toBeLessThanOrEqual(1);
  });
});
