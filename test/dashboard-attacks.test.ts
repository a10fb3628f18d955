import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type RequestListener } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import alertsPlugin from '@usepod-agent/plugin-alerts';
import dashboardPlugin, { type FleetRow, type PageState } from '@usepod-agent/plugin-dashboard';
import ledgerPlugin from '@usepod-agent/plugin-ledger';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, type TestAgent, type TestAgentOptions, VllmEmulator } from '@usepod-agent/testkit';
import { freePort } from '@usepod-agent/testkit/real';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, homeEnv, runAgent, type Scratch, scratch } from './cli.js';

/**
 * The owner-facing web surface of issue 32 (the dashboard plugin, core's status server and its token,
 * `dashboard`/`status`) attacked to issue 28's standard: another local user, a page in the operator's
 * browser, a hostile fleet peer, a file on disk. Each test failed before the fix named in its row.
 *
 * | attack                                                         | surface            | before                                          | now                                                  |
 * | -------------------------------------------------------------- | ------------------ | ----------------------------------------------- | ---------------------------------------------------- |
 * | a FIFO planted as status.token beside the key                  | agent start        | readFileSync blocked: the agent never started   | refused with one warning; the agent runs, no page    |
 * | status.token a link to the operator's file, before first start | agent start        | the token written through it (file clobbered)   | refused, the target untouched                        |
 * | another user's status.token holding a token they know (root)  | agent start        | adopted (root's chmod to 0600 succeeds)         | refused with one warning naming the owner            |
 * | status.token a folder, empty, garbage, 0644                    | agent start        | (held) warned (EISDIR) / made again / made 0600 | same; kept as a regression                           |
 * | a fleet token_file that is a FIFO                              | /api/fleet         | the event loop blocked for good: relay frozen   | the row says why; /healthz answers                   |
 * | another user's process on the agent's port (agent down)        | dashboard --fleet  | sent the token (Authorization: Bearer)          | refused in one line naming the uid; nothing sent     |
 * | the same squatter, the agent's address 0.0.0.0:PORT           | status             | sent the token (only loopback was spared)       | not sent: the port's owner is not the token's        |
 * | that port answering 200 MB / not JSON / a redirect to file:    | dashboard --fleet  | read whole; SyntaxError; followed               | bounded, one USEPOD_AGENT_NOT_RUNNING line, no follow |
 * | fleet peers: trickling forever, never answering                | /api/fleet         | (held) 3 s each, then a row saying so           | same; kept as a regression                           |
 * | a fleet peer redirecting (307) to another server               | /api/fleet         | (held) not followed: the token stays            | same; kept as a regression                           |
 * | a fleet token_file of garbage                                  | /api/fleet         | sent as a header: "unreachable: UND_ERR_INVALID_ARG" | "its token_file cannot be read (it holds no token)" |
 * | a FIFO as the ledger file                                      | /api/earnings      | (held) ~3 s, then "disk I/O error"            | "the ledger … is not a regular file" at once, no thread |
 * | 129+ idle sockets to the status server                         | status server      | a socket sending nothing held 20 s+ (no timeout applies): fds without bound | closed at once past 128 (maxConnections) |
 * | an engine url with user:password@                              | /status (no token on loopback) | the password in backends[].url, to any local user | the address without its credentials |
 * | 17 event streams held open                                     | /api/events        | (held) 503 retry-after 5; a closed one frees its place | same; kept as a regression                    |
 * | framing, Referer, Host 127.0.0.1.attacker.example               | page headers       | (held) DENY, frame-ancestors 'none', no-referrer, 421 | same; kept as a regression                   |
 * | a fleet url with user:password@                                | /api/fleet         | the row's url and fetch's error quoting it: the password on the page | refused at start, one line, not quoted |
 * | a coordinator's close reason carrying the enrollment code      | /api/state, SSE    | (held) redacted before it reaches the page     | same; kept as a regression                           |
 * | another local user's server on 127.0.0.1:OTHER, opened once in the operator's browser | page login | sent the token (the HttpOnly cookie goes to every port of a host) | no cookie is ever set or taken: #token= fragment, Bearer header |
 */

const ENROLL = 'POD-ENROLL-SECRET-4242-abcdef';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface Running {
  t: TestAgent;
  base: string;
  token: string;
  get(path: string): Promise<Response>;
}

/** An in-process agent with the dashboard, the testkit's coordinator and an emulated vLLM. */
async function agent(
  config: Record<string, unknown> = {},
  o: { before?: (dir: string) => Promise<void>; plugins?: TestAgentOptions['plugins'] } = {},
): Promise<Running> {
  const engine = await new VllmEmulator().start();
  const t = await createTestAgent({
    plugins: o.plugins ?? [vllmPlugin, ledgerPlugin, alertsPlugin(undefined), dashboardPlugin],
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      coordinator: { enrollment_code: ENROLL },
      observability: { prometheus_addr: '127.0.0.1:0' },
      ...config,
    },
    logLevel: 'debug',
  });
  cleanup.push(async () => {
    await t.close();
    await engine.close();
  });
  await o.before?.(t.dir);
  const started = await t.start();
  if (!started.ok) throw started.error;
  const a = t.agent.statusAddress!;
  const base = `http://127.0.0.1:${a.port}`;
  let token = '';
  try {
    token = readFileSync(join(t.dir, 'status.token'), 'utf8').trim();
  } catch {}
  return {
    t,
    base,
    token,
    get: (path) =>
      fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` }, redirect: 'manual' }),
  };
}

async function online(r: Running) {
  const session = await r.t.coordinator.firstAuthenticated();
  await session.capabilities();
  await r.t.agent.waitFor('online');
  return session;
}

/** A real `usepod-agent run` in a scratch home, its key in `id/`. */
async function processAgent(
  s: Scratch,
  o: { extra?: string; plant?: (keyDir: string) => Promise<void> } = {},
): Promise<{ port: number; stderr: () => string }> {
  const keyDir = join(s.dir, 'id');
  await mkdir(keyDir, { recursive: true, mode: 0o700 });
  await o.plant?.(keyDir);
  const port = await freePort();
  const cfg = join(s.dir, 'agent.toml');
  await writeFile(
    cfg,
    `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${join(keyDir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n[observability]\nprometheus_addr = "127.0.0.1:${port}"\n${o.extra ?? ''}`,
  );
  const a = await runAgent(cfg, {
    env: homeEnv(s.dir),
    cwd: s.dir,
    coordinator: s.coordinator,
    children: s.children,
  });
  return { port, stderr: a.stderr };
}

async function withScratch(): Promise<Scratch> {
  const s = await scratch('usepod-dash-attack-');
  cleanup.push(() => s.close());
  return s;
}

/** Whether a thread of this process waits in the open of a FIFO (Linux's wchan `wait_for_partner`). */
function stuckInFifoOpen(): boolean {
  return readdirSync('/proc/self/task').some((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/wchan`, 'utf8') === 'wait_for_partner';
    } catch {
      return false;
    }
  });
}

const mkfifo = (path: string): void => void execFileSync('mkfifo', ['-m', '600', path]);

describe('the status token file, as another local user or a broken disk leaves it', () => {
  it('a FIFO planted as status.token: the agent starts and runs, the page is refused with one warning', async () => {
    const s = await withScratch();
    const a = await processAgent(s, { plant: async (dir) => mkfifo(join(dir, 'status.token')) });
    expect((await fetch(`http://127.0.0.1:${a.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${a.port}/api/state`)).status).toBe(401);
    expect(a.stderr()).toMatch(/status token could not be made.*not a regular file/);
  });

  it('a link planted as status.token before first start: never written through, the target untouched', async () => {
    let victim = '';
    const r = await agent(
      {},
      {
        before: async (dir) => {
          victim = join(dir, 'precious.txt');
          await writeFile(victim, 'the operator notes\n', { mode: 0o644 });
          await symlink(victim, join(dir, 'status.token'));
        },
      },
    );
    await online(r);
    expect(await readFile(victim, 'utf8')).toBe('the operator notes\n');
    expect((await stat(victim)).mode & 0o777).toBe(0o644);
    expect((await r.get('/api/state')).status).toBe(401);
    expect(r.t.lines.join('\n')).toMatch(/status token could not be made.*symbolic link/);
  });

  it.runIf(process.getuid?.() === 0)(
    'another user’s status.token with a token they know: not adopted',
    async () => {
      const known = 'n'.repeat(43);
      const r = await agent(
        {},
        {
          before: async (dir) => {
            await writeFile(join(dir, 'status.token'), `${known}\n`, { mode: 0o644 });
            await chown(join(dir, 'status.token'), 65534, 65534);
          },
        },
      );
      const res = await fetch(`${r.base}/api/state`, { headers: { authorization: `Bearer ${known}` } });
      expect(res.status).toBe(401);
      expect(r.t.lines.join('\n')).toMatch(/status token could not be made.*belongs to user 65534/);
    },
  );

  it('a folder, an empty file, garbage, a 0644 token: refused or made again, never a crash', async () => {
    const folder = await agent({}, { before: (dir) => mkdir(join(dir, 'status.token')) });
    await online(folder);
    expect(folder.t.lines.join('\n')).toMatch(/status token could not be made.*not a regular file/);
    for (const content of ['', '\u0000garbage\u001b[2J\n']) {
      const r = await agent({}, { before: (dir) => writeFile(join(dir, 'status.token'), content) });
      expect(r.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect((await r.get('/api/state')).status).toBe(200);
      expect((await stat(join(r.t.dir, 'status.token'))).mode & 0o777).toBe(0o600);
    }
    const known = 'k'.repeat(43);
    const open = await agent(
      {},
      {
        before: async (dir) => {
          await writeFile(join(dir, 'status.token'), `${known}\n`);
          await chmod(join(dir, 'status.token'), 0o644);
        },
      },
    );
    expect(open.token).toBe(known);
    expect((await stat(join(open.t.dir, 'status.token'))).mode & 0o777).toBe(0o600);
  });
});

describe('the fleet table, as a hostile disk or peer leaves it', () => {
  it('a fleet token_file that is a FIFO: the row says why, the agent still answers', async () => {
    const s = await withScratch();
    const fifo = join(s.dir, 'peer.token');
    mkfifo(fifo);
    const a = await processAgent(s, {
      extra: `[[dashboard.fleet]]\nname = "peer"\nurl = "http://127.0.0.1:9"\ntoken_file = "${fifo}"\n`,
    });
    const token = readFileSync(join(s.dir, 'id', 'status.token'), 'utf8').trim();
    const res = await fetch(`http://127.0.0.1:${a.port}/api/fleet`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
    });
    const { rows } = (await res.json()) as { rows: FleetRow[] };
    expect(rows[1]).toMatchObject({ name: 'peer', reachable: false });
    expect(rows[1]!.error).toMatch(/token_file cannot be read \(it is not a regular file\)/);
    expect((await fetch(`http://127.0.0.1:${a.port}/healthz`)).status).toBe(200);
  });
});

/**
 * A process holding `port` on 127.0.0.1 as `uid`: it prints each request's Authorization and answers as
 * `mode` says (a huge body, text that is not JSON, a redirect to a file: URL).
 */
async function squatter(
  port: number,
  o: { uid?: number; mode: 'huge' | 'junk' | 'redirect' },
): Promise<{ child: ChildProcess; heard: () => string }> {
  const code = `
    const http = require('node:http');
    http.createServer((req, res) => {
      process.stdout.write('AUTH ' + (req.headers.authorization || '-') + '\\n');
      if (${JSON.stringify(o.mode)} === 'huge') { res.writeHead(200); const c = Buffer.alloc(1 << 20, 32); let n = 0;
        const more = () => { while (n++ < 200) if (!res.write(c)) return res.once('drain', more); res.end(); }; more(); }
      else if (${JSON.stringify(o.mode)} === 'redirect') res.writeHead(302, { location: 'file:///etc/shadow' }).end();
      else res.writeHead(200).end('{"rows": [null, 1, "x"');
    }).listen(${port}, '127.0.0.1', () => process.stdout.write('LISTENING\\n'));`;
  const child = spawn(process.execPath, ['-e', code], {
    ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanup.push(async () => {
    child.kill('SIGKILL');
  });
  let out = '';
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('LISTENING')) ok();
    });
    child.once('exit', (c) => fail(new Error(`squatter exited ${c}`)));
  });
  return { child, heard: () => out };
}

/** A config naming 127.0.0.1:port, and a token beside the key, as a stopped agent leaves them. */
async function stoppedAgent(
  s: Scratch,
  port: number,
  host = '127.0.0.1',
): Promise<{ cfg: string; token: string }> {
  const keyDir = join(s.dir, 'id');
  await mkdir(keyDir, { recursive: true, mode: 0o700 });
  const token = 't'.repeat(43);
  await writeFile(join(keyDir, 'status.token'), `${token}\n`, { mode: 0o600 });
  const cfg = join(s.dir, 'agent.toml');
  await writeFile(
    cfg,
    `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${join(keyDir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n[observability]\nprometheus_addr = "${host}:${port}"\n`,
  );
  return { cfg, token };
}

/** An HTTP server on 127.0.0.1 port 0 for one test. */
async function peer(handler: RequestListener): Promise<string> {
  const server = createHttpServer(handler);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanup.push(
    () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('hostile fleet peers', () => {
  it('a peer that trickles forever, one that never answers, one that redirects, a token_file of garbage: rows say why, in bounded time, no token shown or forwarded', async () => {
    const timers: NodeJS.Timeout[] = [];
    cleanup.push(async () => {
      for (const t of timers) clearInterval(t);
    });
    const tmp = await mkdtemp(join(tmpdir(), 'usepod-peer-'));
    cleanup.push(() => rm(tmp, { recursive: true, force: true }));
    const trickle = await peer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"state":"online","x":"');
      timers.push(setInterval(() => res.write('a'), 100));
    });
    const silent = await peer(() => {});
    // A peer redirecting elsewhere: the target must never see the peer's token.
    let heard = '';
    const target = await peer((req, res) => {
      heard += `${req.headers.authorization ?? '-'}\n`;
      res.writeHead(200).end('{}');
    });
    const redirecting = await peer((_req, res) => res.writeHead(307, { location: `${target}/status` }).end());
    const goodToken = join(tmp, 'good.token');
    await writeFile(goodToken, `${'p'.repeat(43)}\n`, { mode: 0o600 });
    const badToken = join(tmp, 'peer.token');
    const peerSecret = 'peer-secret-token-value\u0001with-a-control';
    await writeFile(badToken, peerSecret, { mode: 0o600 });
    const r = await agent({
      dashboard: {
        fleet: [
          { name: 'trickle', url: trickle },
          { name: 'silent', url: silent },
          { name: 'bad-token', url: silent, token_file: badToken },
          { name: 'redirecting', url: redirecting, token_file: goodToken },
        ],
      },
    });
    await online(r);
    const res = await r.get('/api/fleet');
    const text = await res.text();
    const { rows } = JSON.parse(text) as { rows: FleetRow[] };
    expect(rows[1]).toMatchObject({
      name: 'trickle',
      reachable: false,
      error: 'unreachable: no answer in 3 s',
    });
    expect(rows[2]).toMatchObject({
      name: 'silent',
      reachable: false,
      error: 'unreachable: no answer in 3 s',
    });
    expect(rows[3]!.error).toMatch(/token_file cannot be read \(it holds no token\)/);
    expect(text).not.toContain('peer-secret-token-value');
    expect(rows[4]).toMatchObject({ name: 'redirecting', reachable: false });
    expect(heard).toBe('');
    expect((await fetch(`${r.base}/healthz`)).status).toBe(200);
  });
});

describe('`usepod-agent dashboard --fleet` while the agent is down and its port is someone else’s', () => {
  const NOBODY = 65534;
  it.runIf(process.getuid?.() === 0)('another user’s process on the port is not sent the token', async () => {
    const s = await withScratch();
    const port = await freePort();
    const { cfg, token } = await stoppedAgent(s, port);
    const sq = await squatter(port, { uid: NOBODY, mode: 'junk' });
    const r = await cli(['dashboard', '--config', cfg, '--fleet'], { env: homeEnv(s.dir), cwd: s.dir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /held by user 65534, not by the agent's user .*: the status token is not sent there/,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(sq.heard()).not.toContain(token);
  });

  it.runIf(process.getuid?.() === 0)(
    '`status` with a wildcard address does not send the token to another user’s process either',
    async () => {
      const s = await withScratch();
      const port = await freePort();
      const { cfg, token } = await stoppedAgent(s, port, '0.0.0.0');
      const sq = await squatter(port, { uid: NOBODY, mode: 'junk' });
      const r = await cli(['status', '--config', cfg], { env: homeEnv(s.dir), cwd: s.dir });
      expect(r.code).not.toBe(0);
      expect(sq.heard()).toMatch(/AUTH -/);
      expect(sq.heard()).not.toContain(token);
    },
  );

  it('an answer of 200 MB, one that is not JSON, a redirect to file:: one coded line each, no stack', async () => {
    const s = await withScratch();
    for (const mode of ['huge', 'junk', 'redirect'] as const) {
      const port = await freePort();
      const { cfg } = await stoppedAgent(s, port);
      const sq = await squatter(port, { mode });
      const r = await cli(['dashboard', '--config', cfg, '--fleet'], { env: homeEnv(s.dir), cwd: s.dir });
      expect(r.code, mode).not.toBe(0);
      expect(r.stderr, mode).toMatch(/USEPOD_AGENT_NOT_RUNNING/);
      expect(r.stderr, mode).not.toMatch(/\n\s+at |SyntaxError|TypeError/);
      expect(sq.heard().match(/AUTH /g), mode).toHaveLength(1);
      sq.child.kill('SIGKILL');
    }
  });
});

describe('the earnings thread on a ledger that hangs (a FIFO, a hung mount)', () => {
  it('a FIFO as the ledger: the page says so at once, no thread is left stuck in its open', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'usepod-ledger-'));
    cleanup.push(() => rm(tmp, { recursive: true, force: true }));
    const fifo = join(tmp, 'ledger.db');
    mkfifo(fifo);
    const r = await agent({ ledger: { path: fifo } }, { plugins: [vllmPlugin, dashboardPlugin] });
    await online(r);
    const res = await r.get('/api/earnings');
    expect(await res.json()).toEqual({ error: expect.stringMatching(/ledger .* is not a regular file/) });
    expect(stuckInFifoOpen()).toBe(false);
    expect((await fetch(`${r.base}/healthz`)).status).toBe(200);
  });
});

describe('a flood of connections to the status server (another local user)', () => {
  it('past 128 open sockets a new one is closed at once (an idle socket was held for good)', async () => {
    const r = await agent();
    const port = new URL(r.base).port;
    const open = async () => {
      const socket = connect(Number(port), '127.0.0.1');
      await once(socket, 'connect');
      cleanup.push(async () => void socket.destroy());
      return socket;
    };
    const held = [];
    for (let i = 0; i < 128; i++) held.push(await open());
    let firstClosed = false;
    for (const socket of held) socket.once('close', () => (firstClosed = true));
    const extra = await open();
    await once(extra, 'close');
    // Before: every socket lived until the 5 s header timeout, the last opened among the last closed.
    expect(firstClosed).toBe(false);
  });
});

describe('pages held open', () => {
  it('16 event streams at most: the 17th is told to retry, a closed one frees its place (held)', async () => {
    const r = await agent();
    const streams: AbortController[] = [];
    cleanup.push(async () => {
      for (const ac of streams) ac.abort();
    });
    const openStream = async () => {
      const ac = new AbortController();
      const res = await fetch(`${r.base}/api/events`, {
        headers: { authorization: `Bearer ${r.token}` },
        signal: ac.signal,
      });
      if (res.status === 200) {
        streams.push(ac);
        await res.body!.getReader().read();
      } else await res.body?.cancel();
      return res;
    };
    for (let i = 0; i < 16; i++) expect((await openStream()).status).toBe(200);
    const refused = await openStream();
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    streams.shift()!.abort();
    // The server hears the close on its own time: ask until the place is free.
    let again = await openStream();
    while (again.status === 503) again = await openStream();
    expect(again.status).toBe(200);
  });
});

describe('a page on another site in the operator’s browser', () => {
  it('cannot frame the page, learn its address from a Referer, or use a rebinding name (held)', async () => {
    const r = await agent();
    const page = await r.get('/');
    expect(page.status).toBe(200);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(page.headers.get('content-security-policy')).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const rebound = await new Promise<number>((ok, fail) => {
      const socket = connect(Number(new URL(r.base).port), '127.0.0.1', () =>
        socket.end(
          `GET /api/state HTTP/1.1\r\nHost: 127.0.0.1.attacker.example:80\r\nAuthorization: Bearer ${r.token}\r\n\r\n`,
        ),
      );
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('end', () => ok(Number(text.split(' ')[1])));
      socket.on('error', fail);
    });
    expect(rebound).toBe(421);
  });
});

describe('a server of another local user on another port of 127.0.0.1, opened in the operator’s browser', () => {
  it('gets no cookie to read or replay: none is ever set, and one holding the token opens nothing', async () => {
    const r = await agent();
    await online(r);
    const auth = { authorization: `Bearer ${r.token}` };
    const host = new URL(r.base).host;
    // Everything the page does, as the browser does it: its files (no token), the old ?token= address,
    // its API (header), its event stream (?token=), an action (header, own Origin).
    const files = ['/', '/dashboard.js', '/dashboard.css', '/favicon.svg', '/uplot.js', '/uplot.css'];
    const answers: Response[] = [];
    for (const path of [...files, `/?token=${r.token}`])
      answers.push(await fetch(`${r.base}${path}`, { redirect: 'manual' }));
    for (const path of ['/api/state', '/api/earnings', '/api/fleet'])
      answers.push(await fetch(`${r.base}${path}`, { headers: auth }));
    const ac = new AbortController();
    cleanup.push(async () => ac.abort());
    answers.push(await fetch(`${r.base}/api/events?token=${r.token}`, { signal: ac.signal }));
    answers.push(
      await fetch(`${r.base}/api/resume`, { method: 'POST', headers: { ...auth, origin: `http://${host}` } }),
    );
    expect(answers.map((a) => a.status)).toEqual([...files.map(() => 200), 200, 200, 200, 200, 200, 200]);
    for (const a of answers) expect(a.headers.get('set-cookie')).toBeNull();
    // What the page's files hold (served to anyone on this host) carries no token either.
    for (const a of answers.slice(0, files.length + 1)) expect(await a.text()).not.toContain(r.token);
    // A cookie, however it got into a browser, is no credential on any route that needs the token.
    const port = new URL(r.base).port;
    const cookie = `usepod_status_${port}=${r.token}; token=${r.token}`;
    for (const path of ['/api/state', '/api/earnings', '/api/fleet', '/api/events'])
      expect((await fetch(`${r.base}${path}`, { headers: { cookie } })).status).toBe(401);
    const post = await fetch(`${r.base}/api/pause`, {
      method: 'POST',
      headers: { cookie, origin: `http://${host}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(post.status).toBe(401);
    expect(r.t.agent.holds()).toEqual([]);
  });
});

describe('no secret reaches the page', () => {
  it('an engine address with user:password@: not on /status (open to local users on loopback) nor the page', async () => {
    const engine = await new VllmEmulator().start();
    cleanup.push(() => engine.close());
    const url = new URL(engine.url);
    url.username = 'op';
    url.password = 'userinfo-secret-pass';
    const r = await agent({ backends: [{ kind: 'vllm', url: url.toString() }] });
    await online(r);
    const status = await (await fetch(`${r.base}/status`)).text();
    expect(status).toContain(`"url":"${engine.url}`);
    for (const body of [status, await (await r.get('/api/state')).text()])
      expect(body).not.toContain('userinfo-secret-pass');
    expect(r.t.lines.join('\n')).not.toContain('userinfo-secret-pass');
  });

  it('a fleet url with user:password@: refused at start in one line that does not quote it', async () => {
    const engine = await new VllmEmulator().start();
    cleanup.push(() => engine.close());
    const t = await createTestAgent({
      plugins: [vllmPlugin, dashboardPlugin],
      config: {
        backends: [{ kind: 'vllm', url: engine.url }],
        observability: { prometheus_addr: '127.0.0.1:0' },
        dashboard: { fleet: [{ name: 'peer', url: 'http://op:fleet-peer-pass@127.0.0.1:9' }] },
      },
    });
    cleanup.push(() => t.close());
    const started = await t
      .start()
      .catch((error: unknown) => ({ ok: false as const, error: error as Error }));
    expect(started.ok).toBe(false);
    const err = (started as { error: Error }).error;
    expect(err.message).toMatch(/dashboard\.fleet.*url.*without user:password@/s);
    expect(err.message).not.toContain('fleet-peer-pass');
  });

  it('a coordinator’s close reason carrying the enrollment code is redacted on the page as on /status', async () => {
    const r = await agent();
    const session = await online(r);
    const again = r.t.coordinator.nextAuthenticated(20_000);
    session.close(4000, `enrollment ${ENROLL} revoked`);
    // Back online: the disconnect was heard and is on the page as the last one.
    await (await again).capabilities();
    const s = (await (await r.get('/api/state')).json()) as PageState & { ready: true };
    expect(s.session.last_disconnect).not.toBeNull();
    const page = JSON.stringify(s);
    expect(page).toContain('revoked');
    expect(page).not.toContain(ENROLL);
  });
});
