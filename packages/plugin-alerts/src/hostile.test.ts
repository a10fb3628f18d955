import type { AgentEvent, Logger, PluginContext } from '@usepod-agent/core';
import { createTestAgent, TestCoordinator, WebhookReceiver } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createHooks } from '../../core/src/plugins/hooks.js';
import { parseRetryAfter, retryWait } from './backoff.js';
import { Budget } from './budget.js';
import { readAlerts } from './config.js';
import { Delivery } from './deliver.js';
import alerts, { sendTestAlerts } from './index.js';
import { text } from './text.js';

/**
 * The alerts plugin read as an attacker would (issue 28): a coordinator or engine choosing the text
 * that reaches the owner's chat, a webhook that fails, hangs or answers slowly, config values at their
 * documented maxima. A real HTTP receiver on 127.0.0.1 stands in for each chat.
 */

/** What an engine or coordinator could write: a masked link, mentions, formatting, an ESC sequence. */
const HOSTILE = '[Claim](https://evil) @everyone <!channel> *bold* _it_ ~s~ `c` \x1b[2J# h';

class Lines implements Logger {
  readonly lines: string[] = [];
  error = (m: string, f?: object) => this.lines.push(`error ${m} ${JSON.stringify(f ?? {})}`);
  warn = (m: string, f?: object) => this.lines.push(`warn ${m} ${JSON.stringify(f ?? {})}`);
  info = (m: string, f?: object) => this.lines.push(`info ${m} ${JSON.stringify(f ?? {})}`);
  debug = (m: string, f?: object) => this.lines.push(`debug ${m} ${JSON.stringify(f ?? {})}`);
  child = () => this;
}

/** The plugin applied to the agent's own hooks, with events fired as core fires them. */
function applied(entries: Record<string, unknown>[], timing = { retryBaseMs: 20, retryMaxMs: 200 }) {
  const hooks = createHooks();
  const log = new Lines();
  const ctx = {
    log,
    config: {},
    coreVersion: '0.4.0',
    section: () => undefined,
    doctorCheck() {},
  } as unknown as PluginContext;
  void alerts({ alerts: entries, timing, flushMs: 200 }).apply(hooks, ctx);
  return {
    log,
    fire: (e: AgentEvent) => hooks.onEvent.call(e),
    close: () => hooks.onClose.promise({ reason: 'test' } as never),
  };
}

const withdrawn = (detail: string): AgentEvent => ({
  type: 'model_withdrawn',
  cause: 'selftests',
  until: undefined,
  backend: 'vllm@127.0.0.1:8000',
  model: `evil/*model*`,
  detail,
});

let receiver: WebhookReceiver;
beforeEach(async () => {
  receiver = await new WebhookReceiver().start();
});
afterEach(async () => {
  vi.useRealTimers();
  await receiver.close();
});

describe('text from outside cannot format a chat message', () => {
  it('Discord: a masked link, @everyone, formatting and an ESC sequence are shown as text', async () => {
    const p = applied([{ url: receiver.url('/api/webhooks/1/t'), format: 'discord' }]);
    p.fire(withdrawn(HOSTILE));
    const [got] = await receiver.wait(1);
    const content = got!.body.content as string;
    // The plugin's own words still format: the title in bold.
    expect(content).toMatch(/^\*\*usepod-agent on .+: evil\\\/\\\*model\\\* withdrawn\*\*\n/);
    expect(content).toContain(
      '\\[Claim\\]\\(https\\:\\/\\/evil\\) \\@everyone \\<\\!channel\\> \\*bold\\* \\_it\\_ \\~s\\~ \\`c\\` ␛\\[2J\\# h',
    );
    expect(content).not.toMatch(/(?<!\\)\[Claim/);
    expect(content).not.toContain('\x1b');
    expect(got!.body.allowed_mentions).toEqual({ parse: [] });
    await p.close();
  });

  it('Slack: no link, mention or formatting from outside; Q4_K_M stays as written', async () => {
    const p = applied([{ url: receiver.url('/services/T/B/x'), format: 'slack' }]);
    p.fire(withdrawn(`${HOSTILE} <http://evil|Claim> Q4_K_M`));
    const [got] = await receiver.wait(1);
    const t = got!.body.text as string;
    expect(t).toMatch(/^\*usepod-agent on .+: evil\/∗model∗ withdrawn\*\n/);
    expect(t).toContain(
      '[Claim](https://evil) @everyone &lt;!channel&gt; ∗bold∗ ＿it＿ ∼s∼ ˋcˋ ␛[2J# h &lt;http://evil|Claim&gt; Q4_K_M',
    );
    expect(t).not.toContain('<');
    expect(t).not.toContain('\u001b');
    await p.close();
  });

  it('ntfy and generic JSON: plain text, control characters folded, values clipped', async () => {
    const p = applied([
      { url: receiver.url('/topic'), format: 'ntfy' },
      { url: receiver.url('/json'), format: 'json' },
    ]);
    p.fire(withdrawn(`${HOSTILE}\nline\u202Eevil${'x'.repeat(5000)}`));
    const got = await receiver.wait(2);
    const ntfy = got.find((g) => g.body.topic)!.body;
    const json = got.find((g) => g.body.source)!.body;
    expect(ntfy.message).toContain('[Claim](https://evil) @everyone <!channel> *bold*');
    for (const s of [ntfy.message, json.message, (json.details as { detail: string }).detail] as string[])
      expect([...s].filter((c) => c < ' ' || c === '\u202e')).toEqual([]);
    expect(json.message).toContain('␛[2J# h␊line�evil');
    expect((json.details as { detail: string }).detail).toHaveLength(300);
    expect((ntfy.message as string).length).toBeLessThan(700);
    await p.close();
  });

  it("another plugin's notice is delivered, its words escaped as text from outside", async () => {
    const p = applied([{ url: receiver.url('/d'), format: 'discord', events: ['notice'] }]);
    p.fire({
      type: 'notice',
      plugin: '@usepod-agent/plugin-ledger',
      name: 'ledger_failing',
      severity: 'warning',
      title: 'the ledger cannot write',
      message: 'SQLITE_FULL at /home/[x](https://evil)',
      resolved: false,
    });
    const [got] = await receiver.wait(1);
    expect(got!.body.content).toMatch(/^\*\*usepod-agent on .+: the ledger cannot write\*\*\nFrom /);
    expect(got!.body.content).toContain('SQLITE\\_FULL at \\/home\\/\\[x\\]\\(https\\:\\/\\/evil\\)');
    await p.close();
  });

  it("ntfy with the owner's Markdown header on: values escaped as Markdown", async () => {
    const p = applied([{ url: receiver.url('/topic'), format: 'ntfy', headers: { 'X-Markdown': 'yes' } }]);
    p.fire(withdrawn('[Claim](https://evil) **now**'));
    const [got] = await receiver.wait(1);
    expect(got!.body.message).toContain('(\\[Claim\\]\\(https\\:\\/\\/evil\\) \\*\\*now\\*\\*)');
    await p.close();
  });

  it("a coordinator's refusal reaches Discord as text, not a masked link", async () => {
    const coordinator = await TestCoordinator.start({
      authorize: () => ({ ok: false, reason: '[Claim your payout](https://evil.example/pay) @everyone' }),
    });
    const t = await createTestAgent({
      coordinator,
      plugins: [alerts({ alerts: [{ url: receiver.url('/d'), format: 'discord' }] })],
      config: { backends: [] },
    });
    try {
      await t.start();
      const [got] = await receiver.wait(1);
      expect(got!.body.content).toContain(
        '\\[Claim your payout\\]\\(https\\:\\/\\/evil\\.example\\/pay\\) \\@everyone.',
      );
    } finally {
      await t.close();
      await coordinator.close();
    }
  });

  it('the rate-limit note keeps the escapes of the alert it joins', () => {
    const joined = text`${text`Model ${'*x*'} failed`}\n(${3} earlier)`;
    expect(joined.render((v) => `<${v}>`)).toBe('Model <*x*> failed\n(<3> earlier)');
  });
});

describe('a failing webhook is retried with backoff, not back to back', () => {
  const timing = { retryBaseMs: 20, retryMaxMs: 1_000, retryTotalMs: 10_000 };
  const cfg = (url: string) => readAlerts([{ url }], undefined)[0]!;
  const alert = {
    event: 'test',
    severity: 'info' as const,
    resolved: false,
    title: text`t`,
    message: text`m`,
    host: 'h',
    providerId: undefined,
    at: new Date().toISOString(),
    details: {},
  };

  it('5xx without Retry-After: six attempts, each wait at least double the last floor', async () => {
    for (let i = 0; i < 5; i++) receiver.script.push({ status: 503 });
    const d = new Delivery(cfg(receiver.url('/x')), new Lines(), timing);
    const r = await d.sendNow(alert, 6);
    expect(r).toMatchObject({ ok: true, attempts: 6 });
    expect(r.waits).toHaveLength(5);
    r.waits.forEach((w, i) => {
      const exp = Math.min(20 * 2 ** i, 1_000);
      expect(w).toBeGreaterThanOrEqual(exp);
      expect(w).toBeLessThanOrEqual(Math.min(exp * 1.5, 1_000));
    });
    await d.close(0);
  });

  it('Retry-After in seconds and as an HTTP date is honoured up to the longest wait; 0 is the floor', async () => {
    receiver.script.push(
      { status: 503, headers: { 'retry-after': '0' } },
      { status: 429, headers: { 'retry-after': '3600' } },
      { status: 503, headers: { 'retry-after': new Date(Date.now() + 86_400_000).toUTCString() } },
    );
    const d = new Delivery(cfg(receiver.url('/x')), new Lines(), { ...timing, retryMaxMs: 300 });
    const r = await d.sendNow(alert, 6);
    expect(r).toMatchObject({ ok: true, attempts: 4 });
    expect(r.waits[0]).toBeGreaterThanOrEqual(20);
    expect(r.waits.slice(1)).toEqual([300, 300]);
    await d.close(0);
  });

  it('all the waits of one alert are bounded: past the total it is given up', async () => {
    for (let i = 0; i < 6; i++) receiver.script.push({ status: 500 });
    const log = new Lines();
    const d = new Delivery(cfg(receiver.url('/x')), log, {
      retryBaseMs: 20,
      retryMaxMs: 200,
      retryTotalMs: 100,
    });
    const r = await d.sendNow(alert, 6);
    expect(r.ok).toBe(false);
    expect(r.waits.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(100);
    expect(r.why).toMatch(/^HTTP 500; retries would wait over 100 ms$/);
    await d.close(0);
  });

  it('a webhook that never answers is bounded by the request timeout', async () => {
    receiver.script.push({ status: 200, hang: true });
    // The second attempt is answered, and must be within the same timeout: 100 ms was short enough that
    // a loaded VM (receiver and client on one busy event loop) could time it out too.
    const d = new Delivery(cfg(receiver.url('/x')), new Lines(), { ...timing, timeoutMs: 1_000 });
    const r = await d.sendNow(alert, 2);
    expect(r).toMatchObject({ ok: true, attempts: 2 });
    await d.close(0);
  });

  it('a webhook answering a body that never ends: the body is not read, the answer is taken', async () => {
    receiver.script.push({ status: 503, endless: true }, { status: 200, endless: true });
    const d = new Delivery(cfg(receiver.url('/x')), new Lines(), timing);
    const r = await d.sendNow(alert, 3);
    expect(r).toMatchObject({ ok: true, status: 200, attempts: 2 });
    await d.close(0);
  });

  it('alerts test (someone at a terminal) gives up rather than wait out a long Retry-After', async () => {
    receiver.script.push({ status: 503, headers: { 'retry-after': '3600' } });
    const d = new Delivery(cfg(receiver.url('/x')), new Lines());
    const r = await d.sendNow(alert);
    expect(r).toMatchObject({ ok: false, attempts: 1, why: 'HTTP 503; retries would wait over 15000 ms' });
    await d.close(0);
  });

  it('the rate limit runs on the monotonic clock: a wall clock stepped back a day holds nothing back', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const d = new Delivery(cfg(receiver.url('/x')), new Lines(), timing);
    d.send(alert);
    await receiver.wait(1);
    vi.setSystemTime(Date.now() - 86_400_000);
    d.send(alert);
    await receiver.wait(2);
    await d.close(0);
  });

  it('a backend that flaps cannot spend the rate limit of a critical alert', async () => {
    const d = new Delivery(
      readAlerts([{ url: receiver.url('/x'), max_per_hour: 1 }], undefined)[0]!,
      new Lines(),
    );
    for (let i = 0; i < 3; i++) d.send({ ...alert, event: 'backend_down' });
    d.send({ ...alert, event: 'disconnected', severity: 'critical', message: text`gone` });
    const got = await receiver.wait(2);
    expect(got.map((g) => g.body.event)).toEqual(['backend_down', 'disconnected']);
    // The newest backend_down waits for its own bucket (an hour here); the critical alert is not its note.
    expect(got[1]!.body.message).toBe('gone');
    await d.close(0);
  });

  it('a full queue drops an alert a later one on its subject supersedes, not the only word on another', async () => {
    receiver.script.push({ status: 200, hang: true });
    const d = new Delivery(
      readAlerts([{ url: receiver.url('/x'), max_per_hour: 3600 }], undefined)[0]!,
      new Lines(),
      { ...timing, timeoutMs: 1_000 },
    );
    const on = (backend: string, resolved: boolean) => ({
      ...alert,
      event: 'backend_down',
      resolved,
      details: { backend },
      subject: backend,
      source: backend,
    });
    d.send(on('hung', false)); // in flight until the request times out
    d.send(on('lone', false));
    // Ten backends flap within their own budgets: 50 more, one past the queue's 50.
    for (let b = 0; b < 10; b++) for (let i = 0; i < 5; i++) d.send(on(`b${b}`, i % 2 === 1));
    const got = await receiver.wait(51, 5_000);
    const backends = got.map((g) => (g.body.details as { backend: string }).backend);
    expect(backends.slice(0, 2)).toEqual(['hung', 'lone']);
    expect(backends.filter((b) => b === 'b0')).toHaveLength(4);
    expect(got.at(-1)!.body.message).toBe('m\n(1 earlier alert(s) were held back by the rate limit)');
    await d.close(0);
  });

  it('the schedule: exponential, jittered up to half again, floored and capped', () => {
    const b = { baseMs: 1_000, maxMs: 300_000, totalMs: 600_000 };
    expect([1, 2, 3, 4, 5].map((n) => retryWait(n, b, undefined, () => 0))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000,
    ]);
    expect(retryWait(1, b, undefined, () => 0.999)).toBe(1_500);
    expect(retryWait(1, b, 0)).toBeGreaterThanOrEqual(1_000);
    expect(retryWait(1, b, 120_000, () => 0)).toBe(120_000);
    expect(retryWait(1, b, 1e12, () => 0)).toBe(300_000);
    expect(retryWait(40, b, undefined, () => 0)).toBe(300_000);
  });

  it('Retry-After: absent, empty and junk are unknown, never 0', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('7', now)).toBe(7_000);
    expect(parseRetryAfter('Sun, 06 Dec 2026 12:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('Sun, 06 Dec 2026 11:00:00 GMT', now)).toBe(0);
  });
});

describe('a flapping source leaves the owner the current state, and silences no other', () => {
  const down = (backend = 'vllm@127.0.0.1:8000'): AgentEvent => ({
    type: 'backend_down',
    backend,
    kind: 'vllm',
    detail: 'connection refused',
  });
  const up = (backend = 'vllm@127.0.0.1:8000'): AgentEvent => ({ type: 'backend_up', backend, kind: 'vllm' });

  it('a backend that flaps past the budget: the newest state, "back", is delivered once the bucket refills', async () => {
    // 3600 an hour: bursts of 5, then a token a second.
    const p = applied([{ url: receiver.url('/j'), events: ['backend_down'], max_per_hour: 3600 }]);
    for (let i = 0; i < 4; i++) {
      p.fire(down());
      p.fire(up());
    }
    // Five went at once (down, back, down, back, down); back, down, back were held.
    const got = await receiver.wait(6, 5_000);
    expect(got.slice(0, 5).map((g) => g.body.resolved)).toEqual([false, true, false, true, false]);
    expect(got[5]!.body).toMatchObject({ event: 'backend_down', resolved: true });
    expect(got[5]!.body.message).toMatch(
      /answers again\.\n\(2 earlier alert\(s\) were held back by the rate limit\)$/,
    );
    // The superseded ones are never sent: no storm once the bucket has room.
    await new Promise((res) => setTimeout(res, 1_500));
    expect(receiver.got).toHaveLength(6);
    await p.close();
  });

  it('five hundred flaps hold one alert, the newest, and it goes once', async () => {
    const p = applied([{ url: receiver.url('/j'), events: ['backend_down'], max_per_hour: 3600 }]);
    for (let i = 0; i < 500; i++) {
      p.fire(down());
      p.fire(up());
    }
    p.fire(down());
    const got = await receiver.wait(6, 5_000);
    expect(got[5]!.body).toMatchObject({ resolved: false });
    expect(got[5]!.body.message).toMatch(/\(995 earlier alert\(s\) were held back by the rate limit\)$/);
    await new Promise((res) => setTimeout(res, 1_500));
    expect(receiver.got).toHaveLength(6);
    await p.close();
  });

  it('each backend has its own budget: one flapping does not hold back another going down', async () => {
    const p = applied([{ url: receiver.url('/j'), events: ['backend_down'], max_per_hour: 1 }]);
    for (let i = 0; i < 3; i++) {
      p.fire(down('vllm@a:1'));
      p.fire(up('vllm@a:1'));
    }
    p.fire(down('vllm@b:2'));
    const got = await receiver.wait(2, 3_000);
    expect(got.map((g) => (g.body.details as { backend: string }).backend)).toEqual(['vllm@a:1', 'vllm@b:2']);
    await p.close();
  });

  it('what waits is bounded: a plugin with a hundred notice names keeps eight, the rest are counted', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const sent: [string, number][] = [];
    const b = new Budget(1, (a, held) => sent.push([String(a.subject), held]));
    const notice = (plugin: string, name: string) => ({
      event: 'notice',
      severity: 'warning' as const,
      resolved: false,
      title: text`t`,
      message: text`m`,
      host: 'h',
      providerId: undefined,
      at: '',
      details: {},
      subject: `${plugin} ${name}`,
      source: plugin,
    });
    for (let i = 0; i < 100; i++) b.offer(notice('noisy', `n${i}`));
    b.offer(notice('ledger', 'ledger_failing'));
    expect(sent).toEqual([
      ['noisy n0', 0],
      ['ledger ledger_failing', 91],
    ]);
    // One an hour for each source: the eight that waited go in order, then nothing.
    vi.advanceTimersByTime(10 * 3_600_000);
    expect(sent.slice(2).map(([s]) => s)).toEqual(
      ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8'].map((n) => `noisy ${n}`),
    );
    // Sources past 32 with budgets in use share the event's: the 33rd goes, the 34th waits.
    sent.length = 0;
    for (let i = 0; i < 34; i++) b.offer(notice(`p${i}`, 'x'));
    expect(sent.map(([s]) => s)).toEqual(Array.from({ length: 33 }, (_, i) => `p${i} x`));
    b.close();
  });
});

describe('timers at the documented maxima', () => {
  it('idle_after_h = 720 and disconnected_after_s = 86400 fire at their time, not at once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const p = applied([
      { url: receiver.url('/i'), events: ['idle'], idle_after_h: 720 },
      { url: receiver.url('/d'), events: ['disconnected'], disconnected_after_s: 86_400 },
    ]);
    p.fire({ type: 'connected', coordinator: 'wss://c', providerId: undefined });
    const raised = () => p.log.lines.filter((l) => l.startsWith('debug alert {'));
    vi.advanceTimersByTime(60_000);
    expect(raised()).toEqual([]);
    p.fire({ type: 'disconnected', coordinator: 'wss://c', why: 'gone', kind: 'unexpected' });
    vi.advanceTimersByTime(86_400_000 - 1);
    expect(raised()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(raised()).toEqual([expect.stringContaining('"event":"disconnected"')]);
    p.fire({ type: 'connected', coordinator: 'wss://c', providerId: undefined });
    vi.advanceTimersByTime(720 * 3_600_000 - 86_400_000 - 60_000 - 20);
    expect(raised().filter((l) => l.includes('"event":"idle"'))).toEqual([]);
    vi.advanceTimersByTime(20);
    expect(raised().filter((l) => l.includes('"event":"idle"'))).toHaveLength(1);
    vi.useRealTimers();
    await p.close();
  });
});

describe('a session that keeps dropping', () => {
  it('is told once as not connected, and as back only when a session holds', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const p = applied([{ url: receiver.url('/d'), events: ['disconnected'], disconnected_after_s: 300 }]);
    const raised = () => p.log.lines.filter((l) => l.startsWith('debug alert {'));
    const up = () => p.fire({ type: 'connected', coordinator: 'wss://c', providerId: undefined });
    const down = () =>
      p.fire({ type: 'disconnected', coordinator: 'wss://c', why: 'closed 1011', kind: 'unexpected' });
    up();
    vi.advanceTimersByTime(120_000);
    down();
    // Every 30 s a session that lasts 1 s: the owner hears of it after 300 s all the same.
    for (let i = 0; i < 9; i++) {
      vi.advanceTimersByTime(29_000);
      up();
      vi.advanceTimersByTime(1_000);
      down();
    }
    expect(raised()).toEqual([]);
    vi.advanceTimersByTime(30_000);
    expect(raised()).toEqual([expect.stringContaining('"event":"disconnected","resolved":false')]);
    // Still flapping: nothing more. Then a session that holds its minute: back, once.
    for (let i = 0; i < 5; i++) {
      up();
      vi.advanceTimersByTime(59_000);
      down();
      vi.advanceTimersByTime(1_000);
    }
    expect(raised()).toHaveLength(1);
    up();
    vi.advanceTimersByTime(60_000);
    expect(raised()).toEqual([expect.anything(), expect.stringContaining('"resolved":true')]);
    vi.useRealTimers();
    await p.close();
  });
});

describe('config at its edges is a one-line mistake at load, not a failure per alert', () => {
  it('a header value with a line break, a bad header name, a URL with a password', () => {
    expect(() =>
      readAlerts([{ url: 'https://x.example/h', headers: { A: 'v\r\nX-Evil: 1' } }], 'a.toml'),
    ).toThrow(/^a\.toml: alerts\[0\]\.headers\.A: a header value must not hold a line break or NUL$/);
    expect(() =>
      readAlerts([{ url: 'https://x.example/h', headers: { 'Bad Name': 'v' } }], 'a.toml'),
    ).toThrow(/alerts\[0\]\.headers\.Bad Name: a header name is/);
    expect(() => readAlerts([{ url: 'https://u:secret@x.example/h' }], 'a.toml')).toThrow(
      /^a\.toml: alerts\[0\]\.url: must not carry a user or password/,
    );
  });

  it('a header fetch cannot send (an emoji in a title, a header the request sets) is refused at load, not on every alert', async () => {
    const at = (headers: Record<string, string>) => [{ url: receiver.url('/topic'), headers }];
    // Before, each was accepted and every alert to a reachable webhook failed in fetch (TypeError), retried.
    await expect(
      sendTestAlerts(at({ Title: '\u26a0 GPU hot' }), { source: 'a.toml', log: new Lines() }),
    ).rejects.toThrow(/^a\.toml: alerts\[0\]\.headers\.Title: a header value is printable ASCII/);
    for (const name of ['Transfer-Encoding', 'expect', 'Upgrade', 'Keep-Alive', 'content-length'])
      expect(() => readAlerts(at({ [name]: '1' }), 'a.toml')).toThrow(
        `a.toml: alerts[0].headers.${name}: is set by the request itself; remove it`,
      );
    expect(receiver.got).toHaveLength(0);
    // What is accepted reaches the webhook as written.
    const [sent] = await sendTestAlerts(at({ Authorization: 'Bearer tk_1', Tags: 'warning,skull' }), {
      log: new Lines(),
    });
    expect(sent).toMatchObject({ ok: true });
    expect(receiver.got[0]!.headers).toMatchObject({ authorization: 'Bearer tk_1', tags: 'warning,skull' });
  });
});
