import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../observability/log.js';
import { OpenAICompatibleBackend } from './openai-compatible.js';

describe('OpenAICompatibleBackend.stream', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('sends each format to its route with its own headers, job after job', async () => {
    const seen: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d;
      });
      req.on('end', () => {
        seen.push({ path: req.url ?? '', headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    const { port } = server.address() as AddressInfo;
    const backend = new OpenAICompatibleBackend({
      kind: 'test',
      url: `http://127.0.0.1:${port}`,
      apiKey: 'sk-test',
      headers: { 'x-extra': 'yes' },
      log: silentLogger,
    });
    cleanups.push(() => backend.close());
    const signal = new AbortController().signal;
    for (const format of ['openai', 'anthropic', 'openai'] as const) {
      const res = await backend.stream({ model: 'm', body: { model: 'm', n: seen.length }, format, signal });
      res.body.resume();
      await new Promise((r) => res.body.on('end', r));
    }
    expect(seen.map((s) => s.path)).toEqual(['/v1/chat/completions', '/v1/messages', '/v1/chat/completions']);
    expect(seen.map((s) => JSON.parse(s.body).n)).toEqual([0, 1, 2]);
    for (const { headers } of seen) {
      expect(headers.authorization).toBe('Bearer sk-test');
      expect(headers['x-extra']).toBe('yes');
      expect(headers['content-type']).toBe('application/json');
      expect(headers.accept).toBe('text/event-stream');
    }
    // The Anthropic key header goes to /v1/messages only, and does not leak into later chat requests.
    expect(seen.map((s) => s.headers['x-api-key'])).toEqual([undefined, 'sk-test', undefined]);
  });
});
