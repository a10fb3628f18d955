import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readBoundedText } from './untrusted.js';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** A peer that sends its headers and then a byte every 50 ms, forever; resolves its URL and its hang-ups. */
async function trickler(): Promise<{ url: string; closed: Promise<unknown> }> {
  let closed!: Promise<unknown>;
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"x":"');
    const t = setInterval(() => res.write('a'), 50);
    closed = once(res, 'close').finally(() => clearInterval(t));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    get closed() {
      return closed;
    },
  };
}

describe('readBoundedText', () => {
  it('ends a body that trickles forever when its signal aborts, even if fetch no longer follows it', async () => {
    const peer = await trickler();
    // fetch is given no signal: what fetch does once its Request is collected mid-body (untrusted.ts).
    const res = await fetch(peer.url);
    const read = readBoundedText(res, 1024 * 1024, AbortSignal.timeout(300));
    await expect(read).rejects.toMatchObject({ name: 'TimeoutError' });
    // The stream was cancelled: the peer sees its connection go.
    await peer.closed;
  });

  it('refuses at once with a signal already aborted, and bounds the size as before', async () => {
    const peer = await trickler();
    const res = await fetch(peer.url);
    const gone = AbortSignal.abort(new Error('gone'));
    await expect(readBoundedText(res, 1024, gone)).rejects.toThrow('gone');
    const res2 = await fetch(peer.url);
    const over = readBoundedText(res2, 8, AbortSignal.timeout(5_000));
    await expect(over).rejects.toThrow('answer over 8 bytes');
    await expect(over).rejects.toBeInstanceOf(RangeError);
  });
});
