import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dashboardPlugin from '@usepod-agent/plugin-dashboard';
import ledgerPlugin from '@usepod-agent/plugin-ledger';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  type TestAgent,
  TestCoordinator,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { freePort } from '@usepod-agent/testkit/real';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ensureChromium, launch } from './chromium.js';

/**
 * The dashboard in a real browser (issue 32): Debian's Chromium, driven by playwright-core, against an
 * agent with the ledger and the dashboard, a TestCoordinator and a vLLM emulator, all on 127.0.0.1.
 * What the operator sees and does (state, models, a job in flight then done, the earnings chart, pause,
 * resume, self-tests, the fleet table), what a stranger cannot do (no token, a foreign Host, a page on
 * another port: no cookie to read or ride on, no token, its POST refused; another local user holding
 * the port while the agent restarts: never sent the token), and that the page asks nothing of anyone but the agent. It writes the README's
 * screenshots (light and dark, desktop and phone) to docs/images/.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const IMAGES = join(ROOT, 'docs/images');
const MODEL = 'Qwen/Qwen3-14B';
const ATTACKER = 'attacker.example';
/** This machine's name, which the agent answers to: a page at http://NAME:PORT is not a secure context. */
const LAN_NAME = hostname().toLowerCase();
/** A model id a coordinator could send: markup that would run if the page used it as HTML. */
const HOSTILE = '<img src=/x onerror="document.title=\'owned\'">';
const FINISH =
  'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":180,"total_tokens":192}}\n\ndata: [DONE]\n\n';

let coordinator: TestCoordinator;
let engine: VllmEmulator;
let t: TestAgent;
let stopped: TestAgent;
let session: CoordinatorSession;
let base: string;
let token: string;
let browser: { context: BrowserContext; close(): Promise<void> };
let page: Page;
const consoleErrors: string[] = [];
const requested: string[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  await ensureChromium();
  coordinator = await TestCoordinator.start();
  engine = await new VllmEmulator().start();
  const config = (extra: Record<string, unknown> = {}) => ({
    backends: [{ kind: 'vllm', url: engine.url }],
    observability: { prometheus_addr: '127.0.0.1:0' },
    ...extra,
  });
  // The fleet's other machine: started once (so its token exists), then stopped.
  stopped = await createTestAgent({ coordinator, plugins: [vllmPlugin, dashboardPlugin], config: config() });
  const s = await stopped.start();
  if (!s.ok) throw s.error;
  await coordinator.nextAuthenticated();
  const stoppedUrl = `http://127.0.0.1:${stopped.agent.statusAddress!.port}`;
  const tokenCopy = join(stopped.dir, '..', `${Date.now()}-gpu-box-2.token`);
  copyFileSync(join(stopped.dir, 'status.token'), tokenCopy);
  await stopped.stop();

  t = await createTestAgent({
    coordinator,
    plugins: [vllmPlugin, ledgerPlugin, dashboardPlugin],
    config: config({
      dashboard: {
        name: 'gpu-box-1',
        fleet: [{ name: 'gpu-box-2', url: stoppedUrl, token_file: tokenCopy }],
      },
    }),
  });
  const started = await t.start();
  if (!started.ok) throw started.error;
  session = await coordinator.nextAuthenticated();
  await session.capabilities();
  await t.agent.waitFor('online');
  base = `http://127.0.0.1:${t.agent.statusAddress!.port}`;
  token = readFileSync(join(t.dir, 'status.token'), 'utf8').trim();

  browser = await launch([`MAP ${ATTACKER} 127.0.0.1`, `MAP ${LAN_NAME} 127.0.0.1`]);
  page = await browser.context.newPage();
  page.on('request', (r) => requested.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
}, 600_000);

afterAll(async () => {
  await browser?.close();
  for (const s of servers) s.close();
  await t?.close();
  await stopped?.close();
  await engine?.close();
  await coordinator?.close();
});

/** Serves one job through the emulator, its stream held open until `finish` is called. */
async function heldJob() {
  engine.behave({ kind: 'controlled' });
  const next = engine.controlled.next();
  const job = session.dispatch({ model_id: MODEL });
  const stream = await next;
  await stream.write('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n');
  await job.firstChunk();
  return {
    async finish() {
      stream.end(FINISH);
      expect((await job.done()).type).toBe('job_done');
    },
  };
}

// Playwright's innerText (the text as rendered, cells apart), not the DOM property biome means.
// biome-ignore lint/performance/useDomNodeTextContent: a Locator method.
const text = (selector: string) => page.locator(selector).innerText();

describe('the dashboard in Chromium', () => {
  it('loads with the token, without a console error, and shows the agent online with its models', async () => {
    // What `usepod-agent dashboard` prints: the token in the fragment, which no server receives.
    const res = await page.goto(`${base}/#token=${token}`);
    expect(res?.status()).toBe(200);
    await page.locator('#state-card[data-state="online"]').waitFor();
    // The token left the address bar (and the history) for this tab's sessionStorage.
    expect(page.url()).toBe(`${base}/`);
    expect(await page.evaluate("sessionStorage.getItem('usepod-token')")).toBe(token);
    expect(await page.locator('#need-token').isHidden()).toBe(true);
    expect(await text('#state-title')).toBe('online');
    await page.locator('#models tbody', { hasText: MODEL }).waitFor();
    expect(await text('#models tbody')).toContain('advertised');
    expect(await text('#session')).toContain(coordinator.url);
  });

  it('shows a job in flight, then in the last jobs, and the served jobs on the earnings charts', async () => {
    const job = await heldJob();
    await page.locator('#in-flight tbody', { hasText: MODEL }).waitFor();
    await job.finish();
    await page.locator('#in-flight tbody', { hasText: 'none now' }).waitFor();
    await page.locator('#last-jobs tbody', { hasText: 'served' }).waitFor();
    expect(await text('#last-jobs tbody')).toContain(MODEL);
    // Two more, so the charts and the screenshots have something to show.
    for (let i = 0; i < 2; i++) await (await heldJob()).finish();
    await page.locator('#chart-day[data-points="1"] canvas').waitFor();
    await page.locator('#by-model tbody', { hasText: MODEL }).waitFor();
    // The sums are made again at most every 3 s: the page's ask after the last job waits for that.
    await expect.poll(async () => text('#by-model tbody'), { timeout: 6_000 }).toMatch(/\b3\b/);
    expect(Number(await page.locator('#chart-hour').getAttribute('data-points'))).toBeGreaterThanOrEqual(1);
    expect(await text('#earn-today')).toMatch(/^[0-9.]+ USDC$/);
    expect(await text('#earn-today')).not.toBe('0.0000 USDC');
  });

  it('runs the self-tests from the page: TTFT and tok/s appear', async () => {
    await page.click('#selftest');
    await page.locator('#action-result', { hasText: 'self-test(s), 0 failed' }).waitFor();
    await expect.poll(async () => text('#models tbody')).toMatch(/\d+ ms/);
  });

  it('writes the screenshots: light and dark, desktop and phone', async () => {
    mkdirSync(IMAGES, { recursive: true });
    for (const scheme of ['light', 'dark'] as const) {
      for (const [width, height, name] of [
        [1280, 1000, 'desktop'],
        [390, 844, 'phone'],
      ] as const) {
        await page.emulateMedia({ colorScheme: scheme });
        await page.setViewportSize({ width, height });
        await page.reload();
        await page.locator('#state-card[data-state="online"]').waitFor();
        await page.locator('#chart-day canvas').waitFor();
        await page.locator('#fleet tbody tr').nth(1).waitFor();
        // The desktop page whole (fleet and jobs included); the phone's first screen, as one sees it.
        await page.screenshot({
          path: join(IMAGES, `dashboard-${scheme}-${name}.png`),
          fullPage: name === 'desktop',
        });
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 1000 });
  });

  it('shows a model id from the coordinator as text, never as markup', async () => {
    // Refused (no engine serves it): a missed job, in the last jobs and doctor's missed lines.
    expect((await session.dispatch({ model_id: HOSTILE }).done()).type).toBe('job_error');
    await page.locator('#last-jobs tbody', { hasText: '<img src=/x' }).waitFor();
    await page.locator('#missed', { hasText: '<img src=/x' }).waitFor();
    expect(await page.locator('main img').count()).toBe(0);
    expect(await page.title()).toBe('usepod-agent');
  });

  it('pauses: the coordinator gets empty capabilities and the page says "paused by owner"; resume restores', async () => {
    const paused = session.nextFrame('capabilities');
    await page.selectOption('#pause-for', '120');
    await page.click('#pause');
    expect(((await paused) as { models: unknown[] }).models).toEqual([]);
    await page.locator('#state-title', { hasText: 'paused by owner' }).waitFor();
    expect(await text('#holds')).toMatch(/owner: .*until/);
    const resumed = session.nextFrame('capabilities');
    await page.click('#resume');
    expect(((await resumed) as { models: { model_id: string }[] }).models.map((m) => m.model_id)).toEqual([
      MODEL,
    ]);
    await page.locator('#state-title', { hasText: /^online$/ }).waitFor();
  });

  it('shows the fleet: this agent online, the other one stopped', async () => {
    await page.locator('#fleet tbody tr').nth(1).waitFor();
    const rows = await page.locator('#fleet tbody tr').allInnerTexts();
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatch(/gpu-box-1[\s\S]*online/);
    expect(rows[0]).toContain(MODEL);
    expect(rows[1]).toMatch(/gpu-box-2[\s\S]*unreachable/);
  });

  it('without the token the page says how to get one; a foreign Host (DNS rebinding) is refused', async () => {
    // A new tab has its own sessionStorage: no token there.
    const p = await browser.context.newPage();
    expect((await p.goto(`${base}/`))?.status()).toBe(200);
    await p.locator('#need-token').waitFor();
    expect(await p.locator('#need-token').textContent()).toContain('usepod-agent dashboard');
    expect(await p.locator('#live').textContent()).toBe('no token');
    // An old address with ?token=: the page neither uses it nor leaves it in the address bar.
    await p.goto(`${base}/?token=${token}`);
    await p.locator('#need-token').waitFor();
    expect(p.url()).toBe(`${base}/`);
    await p.close();
    // A wrong token (an old tab, a token made again): the agent's proof does not match it, so the page
    // cannot tell the agent from another program on its port. It sends it nowhere and says both.
    const wrong = await browser.context.newPage();
    const asked: string[] = [];
    wrong.on('request', (r) => asked.push(`${r.url()} ${JSON.stringify(r.headers())}`));
    const proved = wrong.waitForResponse((r) => r.url().startsWith(`${base}/api/proof?`));
    await wrong.goto(`${base}/#token=${'x'.repeat(43)}`);
    expect((await proved).status()).toBe(200);
    await wrong.locator('#not-agent').waitFor();
    expect(await wrong.locator('#not-agent').textContent()).toContain('usepod-agent dashboard');
    expect(asked.filter((a) => a.includes('x'.repeat(43)))).toEqual([]);
    expect(asked.filter((a) => a.includes('/api/') && !a.includes('/api/proof?'))).toEqual([]);
    await wrong.close();
    const q = await browser.context.newPage();
    const port = new URL(base).port;
    expect((await q.goto(`http://${ATTACKER}:${port}/#token=${token}`))?.status()).toBe(421);
    await q.close();
  });

  it('gives a page on another port of 127.0.0.1 nothing: no cookie, no token, and its POST is refused', async () => {
    // Another local user's server, opened in the browser that holds the dashboard: before, the
    // dashboard's cookie was sent to it (cookies ignore the port). Now there is none to send.
    const heard: string[] = [];
    const evil = await listen((req, res) => {
      heard.push(JSON.stringify(req.headers));
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<!doctype html><script>fetch(${JSON.stringify(`${base}/api/pause`)}, {method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}'})</script>`,
      );
    });
    expect(await browser.context.cookies()).toEqual([]);
    const other = await browser.context.newPage();
    const answered = other.waitForResponse((r) => r.url() === `${base}/api/pause`);
    await other.goto(evil);
    expect((await answered).status()).toBe(401);
    // Its script sees no cookie and not the dashboard's storage (another origin's).
    expect(await other.evaluate("[document.cookie, sessionStorage.getItem('usepod-token')]")).toEqual([
      '',
      null,
    ]);
    await other.close();
    expect(heard.length).toBeGreaterThan(0);
    for (const h of heard) {
      expect(h).not.toContain(token);
      expect(h).not.toMatch(/"cookie"/);
    }
    expect(await browser.context.cookies()).toEqual([]);
    expect(t.agent.holds()).toEqual([]);
  });

  it('sends the token to no one holding the port while the agent restarts, and carries on once it is back', async () => {
    // The agent an update restarts: a fixed port, its token in a file the next run reads.
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    const first = await agentAt(addr);
    onTestFinished(() => first.close());
    const here = `http://${addr}`;
    const tokenFile = join(first.dir, 'status.token');
    const own = readFileSync(tokenFile, 'utf8').trim();
    const p = await browser.context.newPage();
    onTestFinished(() => p.close());
    await p.goto(`${here}/#token=${own}`);
    await p.locator('#live', { hasText: /^live/ }).waitFor();
    expect(await p.evaluate("sessionStorage.getItem('usepod-token')")).toBe(own);

    // The agent stops; another local user binds its port in the gap, answering anything, a proof too.
    await first.stop();
    const squat = await squatter(port);
    // Longer than the event stream's retry (2 s) and the fleet table's refresh (5 s): what the page sent
    // before, the token as ?token= and as a header.
    await new Promise((r) => setTimeout(r, 7_000));
    expect(squat.heard.length).toBeGreaterThan(0);
    for (const h of squat.heard) {
      expect(h).not.toContain(own);
      expect(h.toLowerCase()).not.toContain('authorization');
    }
    // Only proofs asked, each with a fresh nonce; the page says why it sends nothing, and the tab keeps
    // no token for a reload (which would run the squatter's script in this origin).
    const paths = squat.heard.map((h) => (JSON.parse(h) as { url: string }).url);
    expect(paths.every((u) => /^\/api\/proof\?nonce=[0-9a-f]{64}$/.test(u))).toBe(true);
    expect(new Set(paths).size).toBe(paths.length);
    await p.locator('#not-agent').waitFor();
    expect(await p.locator('#live').textContent()).toBe('not the agent: token not sent');
    expect(await p.evaluate("sessionStorage.getItem('usepod-token')")).toBeNull();

    // The squatter goes, the agent is back on its port: the page proves it and carries on by itself.
    await squat.close();
    const second = await agentAt(addr, tokenFile);
    onTestFinished(() => second.close());
    await p.locator('#not-agent').waitFor({ state: 'hidden' });
    await p.locator('#live', { hasText: /^live/ }).waitFor();
    expect(await p.evaluate("sessionStorage.getItem('usepod-token')")).toBe(own);
  });

  it("lets no squatter's service worker keep the agent's pages once the agent is back on its port", async () => {
    // Another local user holds the port while the agent restarts, and the owner opens the address then:
    // the squatter's page registers a worker that answers every page of this origin from then on.
    const port = await freePort();
    const here = `http://127.0.0.1:${port}`;
    const squat = await workerSquatter(port);
    const p = await browser.context.newPage();
    onTestFinished(() => p.close());
    await p.goto(`${here}/`);
    await p.evaluate('navigator.serviceWorker.ready.then(() => undefined)');
    await p.goto(`${here}/`);
    expect(await p.title()).toBe('squatted');
    await squat.close();

    // The agent is back. The worker still answers the next visit, but the browser asks the agent for
    // the worker's script: the one it gets removes the worker and reloads the page from the agent.
    const agent = await agentAt(`127.0.0.1:${port}`);
    onTestFinished(() => agent.close());
    await p.goto(`${here}/`);
    await expect
      .poll(() => p.evaluate('navigator.serviceWorker.getRegistrations().then((r) => r.length)'), {
        timeout: 30_000,
      })
      .toBe(0);
    await p.goto(`${here}/`);
    expect(await p.title()).toBe('usepod-agent');
  });

  it('over plain http from another machine (no crypto.subtle) sends the token on the first load only', async (ctx) => {
    if (isIP(LAN_NAME) !== 0 || LAN_NAME === 'localhost' || LAN_NAME.endsWith('.localhost'))
      ctx.skip(`this machine's name (${LAN_NAME}) is a secure context`);
    const port = await freePort();
    const agent = await agentAt(`127.0.0.1:${port}`);
    onTestFinished(() => agent.close());
    const own = readFileSync(join(agent.dir, 'status.token'), 'utf8').trim();
    const p = await browser.context.newPage();
    onTestFinished(() => p.close());
    await p.goto(`http://${LAN_NAME}:${port}/#token=${own}`);
    expect(await p.evaluate('[isSecureContext, typeof crypto.subtle]')).toEqual([false, 'undefined']);
    // The owner just opened this address: the page believes it once.
    await p.locator('#live', { hasText: /^live/ }).waitFor();

    await agent.stop();
    const squat = await squatter(port);
    await new Promise((r) => setTimeout(r, 7_000));
    for (const h of squat.heard) expect(h).not.toContain(own);
    // It cannot check who answers now: it stops, and says to open the address again.
    expect(await p.locator('#lost').isVisible()).toBe(true);
    expect(await p.locator('#lost').textContent()).toContain('usepod-agent dashboard');
    expect(await p.evaluate("sessionStorage.getItem('usepod-token')")).toBeNull();
    await squat.close();
  });

  it('asked nothing of anyone but the agent, and logged no console error', async () => {
    expect(requested.filter((u) => !u.startsWith(`${base}/`))).toEqual([]);
    expect(consoleErrors).toEqual([]);
    expect(requested.filter((u) => u.startsWith(`${base}/`)).length).toBeGreaterThan(5);
  });
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** An agent with the dashboard whose status server is at `addr`; `tokenFile`: the previous run's token. */
async function agentAt(addr: string, tokenFile?: string): Promise<TestAgent> {
  const a = await createTestAgent({
    coordinator,
    plugins: [vllmPlugin, dashboardPlugin],
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      observability: { prometheus_addr: addr, ...(tokenFile ? { token_file: tokenFile } : {}) },
    },
  });
  const s = await a.start();
  if (!s.ok) throw s.error;
  return a;
}

/** A squatter whose page registers a service worker that answers every page of the origin itself. */
async function workerSquatter(port: number): Promise<{ close(): Promise<void> }> {
  const worker = `self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));
self.addEventListener('fetch', (e) => {
  if (e.request.mode === 'navigate')
    e.respondWith(new Response('<title>squatted</title>', { headers: { 'content-type': 'text/html' } }));
});`;
  const server = createServer((req, res) => {
    if (req.url === '/sw.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(worker);
    else
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end("<title>registering</title><script>navigator.serviceWorker.register('/sw.js')</script>");
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Another local user's server on `port` once the agent let it go: it records every request (its URL
 * and headers) and answers each as the agent might, a well-formed proof made without the token included.
 */
async function squatter(port: number): Promise<{ heard: string[]; close(): Promise<void> }> {
  const heard: string[] = [];
  const server = createServer((req, res) => {
    heard.push(JSON.stringify({ url: req.url, headers: req.headers }));
    const body = req.url?.startsWith('/api/proof')
      ? JSON.stringify({ proof: randomBytes(32).toString('hex') })
      : '{}';
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  for (let i = 0; ; i++) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (err) {
      if (i >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    heard,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
