import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AbortRelay } from '../relay/abort-relay.js';
import { CONNECT_TIMEOUT_MS } from './engine-pool.js';
import { createPool, promGauge, readText, send } from './http.js';

describe('promGauge', () => {
  it('reads the first sample of a gauge, with or without labels, and no other metric', () => {
    const text =
      '# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 3\nllamacpp:requests_processing_total 9\ntgi_queue_size{model="m"} 2.5\n';
    expect(promGauge(text, 'llamacpp:requests_processing')).toBe(3);
    expect(promGauge(text, 'tgi_queue_size')).toBe(2.5);
    expect(promGauge(text, 'tgi_batch_current_size')).toBeUndefined();
    expect(promGauge('x.y 1\nxzy 2\n', 'xzy')).toBe(2);
  });
});

describe('send: the engine client', () => {
  let server: Server | undefined;
  const pool = createPool();
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  /** An engine on 127.0.0.1; resolves its URL and the connections it accepted. */
  async function engine(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    const sockets: Socket[] = [];
    server = createServer(handler);
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s: Socket) => sockets.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets };
  }

  it('sends a job again on a new connection when the engine closed the kept-alive one first', async () => {
    // What an engine does when its keep-alive timeout ends as the next job is sent: it closes the
    // connection without an answer. No byte was relayed, so the job must not fail for it.
    const e = await engine((req, res) => {
      if ((req.socket as Socket & { served?: boolean }).served) return void req.socket.destroy();
      (req.socket as Socket & { served?: boolean }).served = true;
      req.resume();
      req.on('end', () => res.end(`ok ${req.method}`));
    });
    expect(await readText((await send(pool, `${e.url}/a`, { method: 'GET' })).body)).toBe('ok GET');
    const res = await send(pool, `${e.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(200);
    expect(await readText(res.body)).toBe('ok POST');
    expect(e.sockets).toHaveLength(2);
  });

  it("closes an idle connection a second before the engine's Keep-Alive timeout, as Node does", async () => {
    const e = await engine((_req, res) => {
      res.setHeader('keep-alive', 'timeout=2');
      res.end('ok');
    });
    const started = Date.now();
    await readText((await send(pool, e.url, { method: 'GET' })).body);
    // The engine's own timeout is 60 s: the close is the client's, after 1 s.
    await once(e.sockets[0]!, 'close');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("closes the connection at once on the job's abort, while the engine thinks and while it streams", async () => {
    const closes: Promise<unknown>[] = [];
    const e = await engine((req, res) => {
      closes.push(once(req.socket, 'close'));
      if (req.url === '/stream') res.write('data: 1\n\n');
    });
    const thinking = new AbortRelay();
    const opened = send(pool, `${e.url}/think`, { method: 'POST', body: '{}', abort: thinking });
    await new Promise((r) => server!.once('request', r));
    thinking.abort(new Error('cancel'));
    await expect(opened).rejects.toThrow('cancel');
    await closes[0];

    const streaming = new AbortRelay();
    const res = await send(pool, `${e.url}/stream`, { method: 'POST', body: '{}', abort: streaming });
    expect(res.body.readableHighWaterMark).toBe(16 * 1024);
    const failed = once(res.body, 'error');
    streaming.abort(new Error('deadline'));
    expect(((await failed)[0] as Error).message).toBe('deadline');
    await closes[1];
  });

  it('gives up on a connection the engine never accepts after the connect timeout, as unreachable', async () => {
    // A listener whose process never runs its loop again: once its backlog (1) is full, the kernel drops
    // further SYNs and a connect waits with no answer, as to a host that is gone.
    const child = spawn(process.execPath, [
      '-e',
      "const s = require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => { console.log(s.address().port); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); });",
    ]);
    const fill: Socket[] = [];
    try {
      const port = Number(String((await once(child.stdout, 'data'))[0]).trim());
      for (let i = 0; i < 8; i++) fill.push(connect(port, '127.0.0.1').on('error', () => {}));
      const started = Date.now();
      await expect(send(pool, `http://127.0.0.1:${port}/health`, { method: 'GET' })).rejects.toMatchObject({
        code: 'USEPOD_BACKEND_UNREACHABLE',
        message: expect.stringContaining('ETIMEDOUT'),
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 100);
    } finally {
      for (const s of fill) s.destroy();
      child.kill();
    }
  }, 20_000);

  it('maps a refused connection to USEPOD_BACKEND_UNREACHABLE', async () => {
    const e = await engine((_req, res) => res.end());
    server!.close();
    await expect(send(pool, e.url, { method: 'GET' })).rejects.toMatchObject({
      code: 'USEPOD_BACKEND_UNREACHABLE',
    });
  });
});
