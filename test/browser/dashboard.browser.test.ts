import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChromium, launch } from './chromium.js';

/**
 * The dashboard in a real browser (issue 32): Debian's Chromium, driven by playwright-core, against an
 * agent with the ledger and the dashboard, a TestCoordinator and a vLLM emulator, all on 127.0.0.1.
 * What the operator sees and does (state, models, a job in flight then done, the earnings chart, pause,
 * resume, self-tests, the fleet table), what a stranger cannot do (no token, a foreign Host, a page on
 * another port: no cookie to read or ride on, no token, its POST refused), and that the page asks nothing of anyone but the agent. It writes the README's
 * screenshots (light and dark, desktop and phone) to docs/images/.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const IMAGES = join(ROOT, 'docs/images');
const MODEL = 'Qwen/Qwen3-14B';
const ATTACKER = 'attacker.example';
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

  browser = await launch([`MAP ${ATTACKER} 127.0.0.1`]);
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
    // A wrong token (an old tab, a token made again): the same line, once the agent said 401.
    const wrong = await browser.context.newPage();
    const refused = wrong.waitForResponse((r) => r.url().startsWith(`${base}/api/`));
    await wrong.goto(`${base}/#token=${'x'.repeat(43)}`);
    expect((await refused).status()).toBe(401);
    await wrong.locator('#need-token').waitFor();
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
