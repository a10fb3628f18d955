import { readFileSync, statSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AgentPlugin, AgentTiming } from '@usepod-agent/core';
import alertsPlugin from '@usepod-agent/plugin-alerts';
import ledgerPlugin from '@usepod-agent/plugin-ledger';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, holdsPlugin, type TestAgent, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import dashboardPlugin, { type EarningsSeries, type FleetRow, type PageState } from './index.js';

/**
 * The dashboard plugin in-process (issue 32): a real agent with the ledger, a TestCoordinator, a vLLM
 * emulator and the status server on 127.0.0.1 port 0. Its API, who gets in (token, Host, Origin), that
 * no secret reaches the page, and the fleet table over real HTTP. The page itself is driven in Chromium
 * by the browser tier (test/browser).
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const MODEL = 'Qwen/Qwen3-14B';
const ENROLL = 'POD-ENROLL-SECRET-4242-abcdef';
const API_KEY = 'sk-engine-secret-key-0123456789';
const WEBHOOK = 'http://127.0.0.1:9/hooks/webhook-secret-path-77';

interface Running {
  t: TestAgent;
  engine: VllmEmulator;
  base: string;
  token: string;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
}

async function running(
  config: Record<string, unknown> = {},
  o: { start?: boolean; plugins?: AgentPlugin[]; timing?: AgentTiming } = {},
): Promise<Running> {
  const engine = await new VllmEmulator().start();
  const t = await createTestAgent({
    plugins: [vllmPlugin, ledgerPlugin, alertsPlugin(undefined), dashboardPlugin, ...(o.plugins ?? [])],
    config: {
      backends: [{ kind: 'vllm', url: engine.url, api_key_env: 'ENGINE_KEY' }],
      coordinator: { enrollment_code: ENROLL },
      alerts: [{ url: WEBHOOK, events: ['backend_down'] }],
      observability: { prometheus_addr: '127.0.0.1:0' },
      ...config,
    },
    env: { ENGINE_KEY: API_KEY },
    logLevel: 'debug',
    ...(o.timing ? { timing: o.timing } : {}),
  });
  cleanup.push(async () => {
    await t.close();
    await engine.close();
  });
  if (o.start !== false) {
    const started = await t.start();
    if (!started.ok) throw started.error;
  }
  const a = t.agent.statusAddress;
  const base = a ? `http://127.0.0.1:${a.port}` : '';
  const token = a ? readFileSync(join(t.dir, 'status.token'), 'utf8').trim() : '';
  return {
    t,
    engine,
    base,
    token,
    get: (path, headers = {}) => fetch(`${base}${path}`, { headers, redirect: 'manual' }),
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A raw request (fetch cannot set Host). */
function raw(
  base: string,
  path: string,
  o: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: o.method ?? 'GET',
        headers: o.headers,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

async function state(r: Running): Promise<PageState & { ready: true }> {
  const res = await r.get('/api/state', bearer(r.token));
  expect(res.status).toBe(200);
  return (await res.json()) as PageState & { ready: true };
}

async function online(r: Running) {
  const session = await r.t.coordinator.firstAuthenticated();
  await session.capabilities();
  await r.t.agent.waitFor('online');
  return session;
}

describe('the dashboard plugin', () => {
  it('makes the token, 0600, beside the key, and never logs it', async () => {
    const r = await running();
    expect(r.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(r.t.dir, 'status.token')).mode & 0o777).toBe(0o600);
    // The token is never logged.
    expect(r.t.lines.length).toBeGreaterThan(0);
    expect(r.t.lines.join('\n')).not.toContain(r.token);
  });

  it('serves the page without the token, its API only with the Bearer header, and never a cookie', async () => {
    const r = await running();
    await online(r);
    const answers: Response[] = [];
    const get = async (path: string, headers?: Record<string, string>) => {
      const res = await r.get(path, headers);
      answers.push(res);
      return res;
    };
    // The page's files hold no data: they load without a token, with the page's headers.
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await page.text()).toContain('<script src="/uplot.js"');
    for (const file of ['/dashboard.js', '/dashboard.css', '/favicon.svg', '/uplot.css'])
      expect((await get(file)).status).toBe(200);
    const uplot = await get('/uplot.js');
    expect(uplot.status).toBe(200);
    expect((await uplot.text()).length).toBeGreaterThan(20_000);
    // An old address with ?token= is a plain page: no redirect, no cookie.
    expect((await get(`/?token=${r.token}`)).status).toBe(200);
    // The API: the Bearer header only.
    expect((await get('/api/state')).status).toBe(401);
    expect((await get('/api/state', bearer('x'.repeat(43)))).status).toBe(401);
    expect((await get('/api/state', bearer(r.token))).status).toBe(200);
    expect((await get(`/api/state?token=${r.token}`)).status).toBe(401);
    expect((await get(`/api/earnings?token=${r.token}`)).status).toBe(401);
    // A cookie (what any page on another port of this host would be sent) is never a credential.
    const port = new URL(r.base).port;
    for (const cookie of [`usepod_status_${port}=${r.token}`, `token=${r.token}`])
      expect((await get('/api/state', { cookie })).status).toBe(401);
    // The event stream takes ?token= (an EventSource cannot send a header), a right one only.
    expect((await get('/api/events?token=wrong')).status).toBe(401);
    const ac = new AbortController();
    cleanup.push(async () => ac.abort());
    const stream = await fetch(`${r.base}/api/events?token=${r.token}`, { signal: ac.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);
    answers.push(stream);
    // No answer sets a cookie, and none without the token carries it.
    for (const res of answers) expect(res.headers.get('set-cookie')).toBeNull();
    // The probes and /status stay open on loopback, as before.
    expect((await r.get('/healthz')).status).toBe(200);
    expect((await r.get('/status')).status).toBe(200);
  });

  it('refuses a foreign Host (DNS rebinding) and a cross-origin POST (CSRF)', async () => {
    const r = await running();
    await online(r);
    const host = new URL(r.base).host;
    const foreign = await raw(r.base, '/api/state', {
      headers: { host: 'attacker.example', ...bearer(r.token) },
    });
    expect(foreign.status).toBe(421);
    const json = { 'content-type': 'application/json' };
    const cross = await raw(r.base, '/api/pause', {
      method: 'POST',
      headers: { host, ...bearer(r.token), origin: 'http://attacker.example', ...json },
      body: '{}',
    });
    expect(cross.status).toBe(403);
    const site = await raw(r.base, '/api/pause', {
      method: 'POST',
      headers: { host, ...bearer(r.token), 'sec-fetch-site': 'cross-site', ...json },
      body: '{}',
    });
    expect(site.status).toBe(403);
    // A cookie, even from the page's own origin, acts on nothing; nor does ?token= on a POST.
    const cookie = `usepod_status_${new URL(r.base).port}=${r.token}`;
    const withCookie = await raw(r.base, '/api/pause', {
      method: 'POST',
      headers: { host, cookie, origin: `http://${host}`, ...json },
      body: '{}',
    });
    expect(withCookie.status).toBe(401);
    const byQuery = await raw(r.base, `/api/pause?token=${r.token}`, {
      method: 'POST',
      headers: { host, origin: `http://${host}`, ...json },
      body: '{}',
    });
    expect(byQuery.status).toBe(401);
    // A GET cannot pause.
    expect((await r.get('/api/pause', bearer(r.token))).status).toBe(405);
    expect(r.t.agent.holds()).toEqual([]);
    expect(r.t.coordinator.received('capabilities')).toHaveLength(1);
  });

  it('pauses from the page (empty capabilities, "paused by owner"), resumes, and bounds the body', async () => {
    const r = await running();
    const session = await online(r);
    const host = new URL(r.base).host;
    const post = (path: string, body: string) =>
      raw(r.base, path, {
        method: 'POST',
        headers: { host, ...bearer(r.token), origin: `http://${host}`, 'content-type': 'application/json' },
        body,
      });
    expect((await post('/api/pause', '{"minutes": -3}')).status).toBe(400);
    expect((await post('/api/pause', 'x'.repeat(20_000))).status).toBe(413);
    const caps = session.nextFrame('capabilities');
    const paused = await post('/api/pause', '{"minutes": 30}');
    expect(paused.status).toBe(200);
    expect(((await caps) as { models: unknown[] }).models).toEqual([]);
    const s = await state(r);
    expect(s.state.title).toBe('paused by owner');
    expect(s.holds[0]?.until).toBeTruthy();
    const back = session.nextFrame('capabilities');
    expect((await post('/api/resume', '')).status).toBe(200);
    expect(((await back) as { models: { model_id: string }[] }).models.map((m) => m.model_id)).toEqual([
      MODEL,
    ]);
    expect((await state(r)).state.code).toBe('online');
  });

  it('shows the models, a job in flight then in the last jobs, and the earnings of served jobs', async () => {
    const r = await running();
    const session = await online(r);
    let s = await state(r);
    expect(s.state.code).toBe('online');
    expect(s.backends[0]?.models[0]).toMatchObject({ id: MODEL, advertised: true });
    r.engine.behave({ kind: 'controlled' });
    const job = session.dispatch({ model_id: MODEL });
    const stream = await r.engine.controlled.waitFor();
    await stream.write('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n');
    await job.firstChunk();
    s = await state(r);
    expect(s.jobs.in_flight).toEqual([
      expect.objectContaining({ model: MODEL, backend: expect.any(String) }),
    ]);
    expect(s.jobs.in_flight[0]!.tokens).toBeGreaterThanOrEqual(1);
    stream.end(
      'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\ndata: [DONE]\n\n',
    );
    expect((await job.done()).type).toBe('job_done');
    s = await state(r);
    expect(s.jobs.in_flight).toEqual([]);
    expect(s.jobs.last[0]).toMatchObject({ model: MODEL, outcome: 'done', output_tokens: 2 });
    // The ledger's thread wrote it before job_done left; the dashboard's thread reads it.
    const e = (await (await r.get('/api/earnings', bearer(r.token))).json()) as EarningsSeries;
    expect(e.by_day.at(-1)).toMatchObject({ served: 1 });
    expect(e.by_day.at(-1)!.earnings_usdc).toBeGreaterThan(0);
    expect(e.by_hour.at(-1)!.earnings_usdc).toBeGreaterThan(0);
    expect(e.by_model[0]).toMatchObject({ group: MODEL, served: 1 });
    expect(e.totals.today).toBeGreaterThan(0);

    // Another job ends within the sums' 3 s floor: the next ask waits for fresh sums instead of
    // answering without it (the page asks once per ended job; it showed the job up to 10 s late).
    const second = session.dispatch({ model_id: MODEL });
    const stream2 = await r.engine.controlled.waitFor();
    stream2.end(
      'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n',
    );
    expect((await second.done()).type).toBe('job_done');
    const again = (await (await r.get('/api/earnings', bearer(r.token))).json()) as EarningsSeries;
    expect(again.by_model[0]).toMatchObject({ group: MODEL, served: 2 });
  });

  it('says why it does not earn: yielding the GPU to a process, offline and why', async () => {
    const holds = holdsPlugin();
    // The next dial waits a minute: the page is read while the agent is offline.
    const r = await running(
      {},
      { plugins: [holds.plugin], timing: { backoffInitialMs: 60_000, backoffMaxMs: 60_000 } },
    );
    const session = await online(r);
    holds.hold('gpu', 'GPU in use: eldenring.exe (pid 5678) uses a GPU');
    let s = await state(r);
    expect(s.state).toMatchObject({ code: 'yielding', title: 'yielding the GPU' });
    expect(s.state.detail).toContain('eldenring.exe (pid 5678)');
    expect(s.backends[0]?.models[0]).toMatchObject({ advertised: false, why: 'paused' });
    holds.release('gpu');
    const gone = new Promise((resolve) => r.t.agent.once('disconnected', resolve));
    session.close(4000, 'replaced by another connection');
    await gone;
    s = await state(r);
    expect(s.state.code).toBe('offline');
    expect(s.state.detail).toMatch(/not connected/);
    expect(s.session.last_disconnect?.why).toBeTruthy();
  });

  it('streams the state as server-sent events', async () => {
    const r = await running();
    await online(r);
    const ac = new AbortController();
    const res = await fetch(`${r.base}/api/events`, { headers: bearer(r.token), signal: ac.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('event: state\ndata: {'))
      text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const data = JSON.parse(text.split('data: ')[1]!.split('\n')[0]!) as PageState & { ready: true };
    expect(data.state.code).toBe('online');
  });

  it('lets no secret reach the page or its API: key, enrollment code, engine API key, token', async () => {
    const r = await running();
    const session = await online(r);
    await session.dispatch({ model_id: MODEL }).done();
    const key = readFileSync(r.t.identityPath, 'utf8');
    const secretLines = key.split('\n').filter((l) => l.trim().length > 20);
    const bodies: string[] = [];
    for (const path of ['/', '/dashboard.js', '/api/state', '/api/earnings', '/api/fleet', '/status']) {
      const res = await r.get(path, bearer(r.token));
      expect(res.status, path).toBe(200);
      bodies.push(await res.text());
    }
    const all = bodies.join('\n');
    expect(all).not.toContain(ENROLL);
    expect(all).not.toContain('webhook-secret-path');
    expect(all).not.toContain(API_KEY);
    expect(all).not.toContain(r.token);
    for (const l of secretLines) expect(all).not.toContain(l.trim());
    expect(all).toContain(MODEL);
  });

  it('refuses a fleet entry that is not an http(s) address, naming the key', async () => {
    const r = await running(
      { dashboard: { fleet: [{ name: 'x', url: 'file:///etc/passwd' }] } },
      { start: false },
    );
    const started = await r.t
      .start()
      .catch((error: unknown) => ({ ok: false as const, error: error as Error }));
    expect(started.ok).toBe(false);
    const err = (started as { error: Error & { code?: string } }).error;
    expect(err.message).toMatch(/dashboard\.fleet\[?\.?0\]?\.url/);
  });

  it('is off with [dashboard] enabled = false: / is the probe again', async () => {
    const r = await running({ dashboard: { enabled: false } });
    const res = await r.get('/', bearer(r.token));
    expect(await res.text()).toBe('ok\n');
  });
});

describe('the fleet table', () => {
  it('shows every agent: this one, another online, a stopped one unreachable, a hostile one folded', async () => {
    const other = await running();
    await online(other);
    const stopped = await running();
    await online(stopped);
    const stoppedUrl = stopped.base;
    const stoppedToken = join(stopped.t.dir, 'status.token');
    // Copied, as an operator copies a token: the stopped agent's folder goes with it.
    const tokenCopy = join(other.t.dir, 'stopped.token');
    const { copyFileSync } = await import('node:fs');
    copyFileSync(stoppedToken, tokenCopy);
    await stopped.t.stop();
    const hostile = await hostileServer();
    const r = await running({
      dashboard: {
        name: 'here',
        fleet: [
          { name: 'other', url: other.base, token_file: join(other.t.dir, 'status.token') },
          { name: 'stopped', url: stoppedUrl, token_file: tokenCopy },
          { name: 'hostile', url: hostile.url },
          { name: 'no-token', url: other.base },
        ],
      },
    });
    await online(r);
    const { rows } = (await (await r.get('/api/fleet', bearer(r.token))).json()) as { rows: FleetRow[] };
    expect(rows.map((x) => x.name)).toEqual(['here', 'other', 'stopped', 'hostile', 'no-token']);
    expect(rows[0]).toMatchObject({ reachable: true, state: 'online', models: [MODEL] });
    expect(rows[1]).toMatchObject({ reachable: true, state: 'online', models: [MODEL], in_flight: 0 });
    expect(rows[2]).toMatchObject({ reachable: false });
    expect(rows[2]!.error).toMatch(/unreachable/);
    expect(rows[3]!.reachable).toBe(true);
    const control = (text: string) => [...text].some((c) => c.charCodeAt(0) < 0x20);
    expect(rows[3]!.models[0]).toContain('evil');
    expect(control(rows[3]!.models[0]!)).toBe(false);
    expect(rows[3]!.alerts.some(control)).toBe(false);
    // On loopback /status is open: the entry without a token reads it too.
    expect(rows[4]).toMatchObject({ reachable: true });
  });

  it('says why an agent cannot be read: a token_file that cannot be read, an answer that is not a status', async () => {
    const junk = await junkServer();
    const r = await running({
      dashboard: {
        fleet: [
          { name: 'gone-file', url: junk.url, token_file: '/nonexistent/status.token' },
          { name: 'junk', url: junk.url },
        ],
      },
    });
    await online(r);
    const { rows } = (await (await r.get('/api/fleet', bearer(r.token))).json()) as { rows: FleetRow[] };
    expect(rows[1]!.error).toMatch(/token_file/);
    expect(rows[2]!.error).toMatch(/not with an agent status|over/);
  });
});

describe('the fleet table and another local user', () => {
  it('sends an agent its token only once it proved it holds it: a process squatting its port gets nothing', async () => {
    const other = await running();
    await online(other);
    const tokenFile = join(other.t.dir, 'status.token');
    const heard: string[] = [];
    // On the port while that agent restarts: answers as a status server would, and keeps what it is sent.
    const squatter = await listen((req, res) => {
      heard.push(`${req.url} ${req.headers.authorization ?? ''}`);
      if (req.url?.startsWith('/api/proof')) return void res.writeHead(200).end('{"proof":"00"}');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    const r = await running({
      dashboard: {
        fleet: [
          { name: 'real', url: other.base, token_file: tokenFile },
          { name: 'squatted', url: squatter.url, token_file: tokenFile },
        ],
      },
    });
    await online(r);
    const { rows } = (await (await r.get('/api/fleet', bearer(r.token))).json()) as { rows: FleetRow[] };
    expect(rows[1]).toMatchObject({ name: 'real', reachable: true, state: 'online' });
    expect(rows[2]!.error).toMatch(/^not sent its token: it did not prove it holds it/);
    expect(heard.length).toBeGreaterThan(0);
    expect(heard.join('\n')).not.toContain(other.token);
  });
});

/** A status server that answers /status with a well-formed status full of terminal escapes. */
async function hostileServer(): Promise<{ url: string }> {
  const status = {
    state: 'online',
    coordinator: 'wss://x',
    backends: [],
    models: [{ model_id: '\u001b[31mevil\nmodel\u0007' }],
    holds: [],
    paused: null,
    jobs: { in_flight: 0 },
    sections: { dashboard: { last_job: null, alerts: ['\u001b]8;;http://x\u0007click'] } },
  };
  return listen((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status)),
  );
}

/** Answers everything with 2 MB of JSON-looking garbage. */
async function junkServer(): Promise<{ url: string }> {
  return listen((_req, res) => res.writeHead(200).end(`[${'1,'.repeat(1_000_000)}1]`));
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ url: string }> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
