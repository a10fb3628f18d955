import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Features } from '../plugins/features.js';
import { STATUS_PROOF_PATH, type StatusRoute, StatusServer, serveStatus } from './status-server.js';
import { ensureStatusToken, readStatusToken, statusTokenPath } from './status-token.js';

/**
 * The status server's guards (issue 32), on real sockets: the token beyond loopback (probes stay open),
 * plugin routes always behind it, a failing route answered alone, and the token file itself.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const TOKEN = 'a'.repeat(43);

async function serve(addr: string, o: { token?: string; routes?: StatusRoute[] } = {}) {
  const server = new StatusServer({
    addr,
    registry: new Registry(),
    status: () => ({ state: 'online' }),
    readiness: () => ({ ready: true }),
    routes: new Map((o.routes ?? []).map((r) => [r.path, r])),
    ...(o.token ? { token: o.token } : {}),
  });
  const bound = await server.listen();
  cleanup.push(() => server.close());
  return `http://127.0.0.1:${bound.port}`;
}

function answer(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    request(
      { host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, headers, method },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString(),
          }),
        );
      },
    )
      .on('error', reject)
      .end();
  });
}

async function get(base: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return (await answer(base, path, headers)).status;
}

const route = (path: string, handle: StatusRoute['handle']): StatusRoute => ({
  plugin: 'test',
  method: 'GET',
  path,
  handle,
});

describe('the status server', () => {
  it('beyond loopback asks the token for /status and /metrics; /healthz and /readyz stay open', async () => {
    const base = await serve('0.0.0.0:0', { token: TOKEN });
    expect(await get(base, '/status')).toBe(401);
    expect(await get(base, '/metrics')).toBe(401);
    expect(await get(base, '/status', { authorization: 'Bearer wrong' })).toBe(401);
    expect(await get(base, '/status', { authorization: `Bearer ${TOKEN}` })).toBe(200);
    expect(await get(base, '/metrics', { authorization: `Bearer ${TOKEN}` })).toBe(200);
    expect(await get(base, '/healthz')).toBe(200);
    expect(await get(base, '/readyz')).toBe(200);
  });

  it('beyond loopback without a token serves nothing but the probes', async () => {
    const base = await serve('0.0.0.0:0');
    expect(await get(base, '/status', { authorization: 'Bearer ' })).toBe(401);
    expect(await get(base, '/healthz')).toBe(200);
  });

  it('on loopback keeps /status open to local tools and refuses a foreign Host', async () => {
    const base = await serve('127.0.0.1:0', { token: TOKEN });
    expect(await get(base, '/status')).toBe(200);
    expect(await get(base, '/status', { host: 'attacker.example' })).toBe(421);
    expect(await get(base, '/status', { host: 'localhost:1' })).toBe(200);
  });

  it('puts plugin routes behind the token and the Host check wherever it listens', async () => {
    const ok = route('/page', (_req, res) => {
      res.writeHead(200).end('page');
    });
    const open = await serve('0.0.0.0:0', { token: TOKEN, routes: [ok] });
    expect(await get(open, '/page')).toBe(401);
    expect(await get(open, '/page', { authorization: `Bearer ${TOKEN}`, host: 'attacker.example' })).toBe(
      421,
    );
    expect(await get(open, '/page', { authorization: `Bearer ${TOKEN}` })).toBe(200);
    const tokenless = await serve('127.0.0.1:0', { routes: [ok] });
    expect(await get(tokenless, '/page', { authorization: `Bearer ${TOKEN}` })).toBe(401);
  });

  it('takes the token from the Bearer header, ?token= only where a GET route asks, never a cookie; sets none', async () => {
    const seen: string[] = [];
    const echo = (path: string, auth?: StatusRoute['auth'], method: 'GET' | 'POST' = 'GET'): StatusRoute => ({
      ...route(path, (req, res) => {
        seen.push(req.query.toString());
        res.writeHead(200).end('ok');
      }),
      method,
      ...(auth ? { auth } : {}),
    });
    const base = await serve('127.0.0.1:0', {
      token: TOKEN,
      routes: [echo('/api'), echo('/events', 'bearer-or-query'), echo('/act', undefined, 'POST')],
    });
    const port = new URL(base).port;
    const answers = [
      await answer(base, '/api', { authorization: `Bearer ${TOKEN}` }),
      await answer(base, `/api?token=${TOKEN}`),
      // What a browser sends every port of 127.0.0.1: the old cookie, or any cookie holding the token.
      await answer(base, '/api', { cookie: `usepod_status_${port}=${TOKEN}` }),
      await answer(base, '/events', { cookie: `usepod_status_${port}=${TOKEN}` }),
      await answer(base, `/events?token=${TOKEN}&since=1`),
      await answer(base, '/events?token=wrong'),
      await answer(base, `/act?token=${TOKEN}`, { origin: base }, 'POST'),
      await answer(base, '/act', { authorization: `Bearer ${TOKEN}`, origin: base }, 'POST'),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 401, 401, 401, 200, 401, 401, 200]);
    for (const a of answers) expect(a.headers['set-cookie']).toBeUndefined();
    // A handler never sees the token, even where the URL carried it.
    expect(seen).toEqual(['', 'since=1', '']);
    // Beyond loopback /status and /metrics take the header only.
    const open = await serve('0.0.0.0:0', { token: TOKEN });
    expect(await get(open, `/status?token=${TOKEN}`)).toBe(401);
    expect(await get(open, '/metrics', { cookie: `usepod_status_${new URL(open).port}=${TOKEN}` })).toBe(401);
  });

  it('serves a route with auth "none" without the token, still Host-checked and with the page headers', async () => {
    const file = {
      ...route('/app.js', (_req, res) => {
        res.writeHead(200).end('x');
      }),
      auth: 'none' as const,
    };
    const base = await serve('0.0.0.0:0', { token: TOKEN, routes: [file] });
    const a = await answer(base, '/app.js');
    expect(a.status).toBe(200);
    expect(a.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(a.headers['set-cookie']).toBeUndefined();
    expect(await get(base, '/app.js', { host: 'attacker.example' })).toBe(421);
  });

  it('proves it holds the token without it: HMAC-SHA256(token, context + nonce); a bad nonce is 400', async () => {
    const base = await serve('0.0.0.0:0', { token: TOKEN });
    const nonce = '0123456789abcdef'.repeat(2);
    const a = await answer(base, `${STATUS_PROOF_PATH}?nonce=${nonce}`);
    expect(a.status).toBe(200);
    expect(a.headers['cache-control']).toBe('no-store');
    expect(a.headers['content-security-policy']).toMatch(/default-src 'self'/);
    // Computed here from the spec, not with the server's own function.
    const want = createHmac('sha256', TOKEN).update(`usepod-agent status proof v1\n${nonce}`).digest('hex');
    expect(JSON.parse(a.body)).toEqual({ proof: want });
    // Another nonce, another proof: an old answer is no answer.
    const other = await answer(base, `${STATUS_PROOF_PATH}?nonce=${'f'.repeat(64)}`);
    expect(JSON.parse(other.body).proof).not.toBe(want);
    expect(JSON.parse(other.body).proof).toMatch(/^[0-9a-f]{64}$/);
    for (const bad of [
      '',
      '?nonce=',
      `?nonce=${'a'.repeat(31)}`,
      `?nonce=${'a'.repeat(65)}`,
      `?nonce=${'A'.repeat(32)}`,
      `?nonce=${'g'.repeat(32)}`,
      `?nonce=${'a'.repeat(32)}%0a`,
      `?nonce=${nonce}&nonce=${nonce}`,
    ]) {
      const r = await answer(base, `${STATUS_PROOF_PATH}${bad}`);
      expect([bad, r.status]).toEqual([bad, 400]);
      expect(r.body).toMatch(/^nonce: /);
      expect(r.body).not.toContain(TOKEN);
    }
    // Host-checked as the page is, GET only, and never a grant: the token is still asked elsewhere.
    expect(await get(base, `${STATUS_PROOF_PATH}?nonce=${nonce}`, { host: 'attacker.example' })).toBe(421);
    expect((await answer(base, `${STATUS_PROOF_PATH}?nonce=${nonce}`, {}, 'POST')).status).toBe(405);
    expect(await get(base, '/status')).toBe(401);
    // Without a token there is nothing to prove with: 503, never a proof made with no key.
    const tokenless = await serve('127.0.0.1:0');
    expect(await get(tokenless, `${STATUS_PROOF_PATH}?nonce=${nonce}`)).toBe(503);
  });

  it('answers any service worker script request, whatever its path, with a worker that removes itself', async () => {
    const app = {
      ...route('/app.js', (_req, res) => void res.writeHead(200).end('page')),
      auth: 'none' as const,
    };
    const base = await serve('127.0.0.1:0', { token: TOKEN, routes: [app] });
    // A squatter's page registered /sw.js, or took a path the dashboard serves: the browser's update
    // check asks it again here, past the worker, with this header.
    for (const path of ['/sw.js', '/app.js', '/status']) {
      const a = await answer(base, path, { 'service-worker': 'script' });
      expect(a.status).toBe(200);
      expect(a.headers['content-type']).toBe('text/javascript');
      expect(a.headers['cache-control']).toBe('no-store');
      expect(a.body).toContain('self.registration.unregister()');
      expect(a.body).not.toContain(TOKEN);
    }
    // Without the header, the same paths are what they were.
    expect((await answer(base, '/app.js')).body).toBe('page');
    expect(await get(base, '/sw.js')).toBe(404);
    expect(await get(base, '/sw.js', { 'service-worker': 'script', host: 'attacker.example' })).toBe(421);
  });

  it('answers a route that throws with a folded 500, and serves on', async () => {
    const base = await serve('127.0.0.1:0', {
      token: TOKEN,
      routes: [
        route('/boom', () => {
          throw new Error('bad\u001b[2J thing');
        }),
        route('/later', async () => {
          await Promise.resolve();
          throw new Error('later');
        }),
      ],
    });
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect(await get(base, '/boom', auth)).toBe(500);
    expect(await get(base, '/later', auth)).toBe(500);
    expect(await get(base, '/healthz')).toBe(200);
  });
});

describe('plugin status routes', () => {
  it('may not take core paths, nor a path another plugin serves', () => {
    const f = new Features({ source: undefined } as never);
    const h = () => {};
    expect(() => f.statusRoute('p', 'GET', '/status', h)).toThrow(/core serves it/);
    expect(() => f.statusRoute('p', 'GET', STATUS_PROOF_PATH, h)).toThrow(/core serves it/);
    expect(() => f.statusRoute('p', 'GET', 'no-slash', h)).toThrow(/a path is/);
    f.statusRoute('p', 'GET', '/mine', h);
    expect(() => f.statusRoute('q', 'POST', '/mine', h)).toThrow(/plugin "p" serves it/);
    // What acts on the agent always asks for the header.
    expect(() => f.statusRoute('p', 'POST', '/act', h, 'none')).toThrow(/a POST needs auth "bearer"/);
    expect(() => f.statusRoute('p', 'POST', '/act', h, 'bearer-or-query')).toThrow(/a POST needs/);
    expect(() => f.statusRoute('p', 'GET', '/x', h, 'cookie' as never)).toThrow(/auth is bearer/);
    f.statusRoute('p', 'GET', '/app.js', h, 'none');
    expect(f.routes.get('/app.js')?.auth).toBe('none');
    expect(f.routes.get('/mine')?.plugin).toBe('p');
  });
});

describe('the status token', () => {
  it('is made once, 0600, beside the key; a file others could read is made 0600 again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-token-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const key = join(dir, 'identity.key');
    expect(readStatusToken(key)).toBeUndefined();
    const token = ensureStatusToken(key);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ensureStatusToken(key)).toBe(token);
    const path = statusTokenPath(key);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFile(path, `${token}\n`, { mode: 0o644 });
    const { chmod } = await import('node:fs/promises');
    await chmod(path, 0o644);
    expect(ensureStatusToken(key)).toBe(token);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    // Not a token (short, empty): made again.
    await writeFile(path, 'short\n');
    const again = ensureStatusToken(key);
    expect(again).not.toBe('short');
    expect((await readFile(path, 'utf8')).trim()).toBe(again);
  });

  it('is only read from observability.token_file (a Secret): never made there, one that holds none is named', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-token-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const key = join(dir, 'identity.key');
    const file = join(dir, 'secret', 'token');
    expect(() => ensureStatusToken(key, file)).toThrow(/token_file .*secret\/token holds no token/);
    expect(readStatusToken(key)).toBeUndefined();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'secret'));
    await writeFile(file, `${TOKEN}\n`, { mode: 0o440 });
    expect(ensureStatusToken(key, file)).toBe(TOKEN);
    expect((await stat(file)).mode & 0o777).toBe(0o440);
    expect(readStatusToken(key)).toBeUndefined();
  });
});

describe('the status token on a full disk', () => {
  it('is made once the disk has room again, when a request needs it: no restart to get the dashboard back', async (ctx) => {
    // A real full disk: a 64 KiB tmpfs, filled (mounting needs root; elsewhere the test is skipped).
    const disk = await mkdtemp(join(tmpdir(), 'usepod-token-full-'));
    cleanup.push(() => rm(disk, { recursive: true, force: true }));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0)
      ctx.skip('no tmpfs could be mounted here (needs root)');
    cleanup.push(async () => {
      spawnSync('umount', [disk]);
    });
    await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
    await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
    const lines: string[] = [];
    const log = {
      error: (m: string) => lines.push(m),
      warn: (m: string) => lines.push(m),
      info: (m: string) => lines.push(m),
      debug: () => {},
      child: () => log,
    };
    const keyPath = join(disk, 'identity.key');
    const page = route('/page', (_req, res) => {
      res.writeHead(200).end('page');
    });
    const server = await serveStatus({
      addr: '127.0.0.1:0',
      registry: new Registry(),
      status: () => ({}),
      log,
      routes: new Map([[page.path, page]]),
      keyPath,
      tokenRetryMs: 0,
    });
    cleanup.push(() => server!.close());
    const base = `http://127.0.0.1:${server!.address()!.port}`;
    expect(lines[0]).toMatch(/^the status token could not be made/);
    expect(await get(base, '/page', { authorization: `Bearer ${TOKEN}` })).toBe(401);
    expect(readStatusToken(keyPath)).toBeUndefined();

    await rm(join(disk, 'fill'));
    // The next request (a probe here) makes it; the one holding it is let in.
    expect(await get(base, '/healthz')).toBe(200);
    const token = readStatusToken(keyPath);
    expect(token).toBeDefined();
    expect(lines.at(-1)).toBe('the status token is made now: the dashboard is served');
    expect(await get(base, '/page', { authorization: `Bearer ${token}` })).toBe(200);
  });
});
