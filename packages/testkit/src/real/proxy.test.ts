import { request } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RealEngineProxy } from './proxy.js';

/**
 * The recording proxy must never write after it ended a response (issue 28: the real-engine tier failed
 * with ERR_STREAM_WRITE_AFTER_END after "maps an error event inside a 200 stream to job_error").
 */
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** An engine that sends its first chunk, then the rest of the stream in one packet, as a busy one does. */
async function burstingEngine(): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.once('data', () => {
      const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
      const event = (n: number) => `data: {"choices":[{"delta":{"content":"t${n}"}}]}\n\n`;
      s.write(
        'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n' +
          chunk(event(0)),
      );
      // The rest once the first chunk is through: several chunks and the end, parsed in one go.
      setImmediate(() =>
        s.end(`${[1, 2, 3, 4].map((n) => chunk(event(n))).join('')}${chunk('data: [DONE]\n\n')}0\r\n\r\n`),
      );
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function post(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end('{"model":"tiny","stream":true}');
  });
}

describe('RealEngineProxy', () => {
  it('injects an error event and writes nothing after it, however the engine’s chunks arrive', async () => {
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    process.on('uncaughtException', onError);
    cleanup.push(() => void process.off('uncaughtException', onError));
    const proxy = await new RealEngineProxy(await burstingEngine()).start();
    cleanup.push(() => proxy.close());
    for (let i = 0; i < 5; i++) {
      proxy.behave({ kind: 'error-in-stream', afterTokens: 1 });
      const { status, body } = await post(proxy.url);
      expect(status).toBe(200);
      expect(body).toMatch(/^data: \{"choices".*"t0".*\n\ndata: \{"error":\{"code":500,/s);
      expect(body).not.toContain('t1');
      expect(body).not.toContain('[DONE]');
    }
    // Unrelated to the requests above, the proxy still relays a whole stream.
    const whole = await post(proxy.url);
    expect(whole.body).toContain('data: [DONE]');
    // A write after end errors on the next tick, long before the client above read its end.
    expect(errors).toEqual([]);
  });
});
