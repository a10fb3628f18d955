import type { AgentPlugin, PluginContext } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  holdsPlugin,
  type TestAgent,
  type TestAgentOptions,
  TestCoordinator,
  VllmEmulator,
  WebhookReceiver,
} from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import alerts from './index.js';

/**
 * Alerts (issue 19), in-process: the plugin, built on the hooks every plugin has, tells a webhook when
 * something needs the owner. A local receiver stands in for ntfy, Discord, Slack and a generic JSON
 * endpoint; each gets the body its format wants. (test/alerts.test.ts keeps what needs the CLI.)
 */

const hello = { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5 };

interface Rig {
  t: TestAgent;
  engine: VllmEmulator;
  session: CoordinatorSession;
  hold(name: string, reason: string): void;
  release(name: string): void;
  close(): Promise<void>;
}

/** An agent with the alerts plugin, serving one emulated vLLM, authenticated with a local coordinator. */
async function rig(
  opts: Omit<TestAgentOptions, 'config'> & { config?: TestAgentOptions['config'] } = {},
): Promise<Rig> {
  const engine = await new VllmEmulator().start();
  const holds = holdsPlugin();
  const t = await createTestAgent({
    ...opts,
    plugins: [...(opts.plugins ?? [vllmPlugin]), holds.plugin],
    config: { backends: [{ kind: 'vllm', url: engine.url }], ...opts.config },
  });
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await t.coordinator.firstAuthenticated();
  await session.capabilities();
  return {
    t,
    engine,
    session,
    hold: holds.hold,
    release: holds.release,
    async close() {
      await t.close();
      await engine.close();
    },
  };
}

const FAST = { retryBaseMs: 20, retryMaxMs: 200 };
let receiver: WebhookReceiver;
let r: Rig | undefined;
beforeEach(async () => {
  receiver = await new WebhookReceiver().start();
});
afterEach(async () => {
  await r?.close();
  r = undefined;
  await receiver.close();
});

function withAlerts(entries: Record<string, unknown>[], extra: Parameters<typeof rig>[0] = {}) {
  return rig({
    plugins: [vllmPlugin, alerts({ alerts: entries, timing: FAST, flushMs: 500 })],
    timing: { discoveryIntervalMs: 50, ...extra.timing },
    ...extra,
  });
}

describe('alert formats', () => {
  it('generic JSON: the event, its facts, and the recovery', async () => {
    r = await withAlerts([{ url: receiver.url('/hooks/secret-token'), events: ['backend_down'] }]);
    await r.engine.goDown();
    const [down] = await receiver.wait(1);
    expect(down!.path).toBe('/hooks/secret-token');
    expect(down!.headers['content-type']).toBe('application/json');
    expect(down!.body).toMatchObject({
      source: 'usepod-agent',
      event: 'backend_down',
      severity: 'warning',
      resolved: false,
      title: expect.stringMatching(/backend vllm@127\.0\.0\.1:\d+ is down/),
      message: expect.stringContaining('Its models are no longer offered'),
      host: expect.any(String),
      provider_id: expect.stringMatching(/^prov_/),
      at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      details: { backend: expect.any(String), kind: 'vllm', detail: expect.any(String) },
    });
    await r.engine.comeUp();
    const [, up] = await receiver.wait(2);
    expect(up!.body).toMatchObject({ event: 'backend_down', resolved: true, severity: 'info' });
  });

  it('ntfy: JSON publishing to the server root, the topic from the URL, priority and tags', async () => {
    r = await withAlerts([{ url: receiver.url('/usepod-my-box'), format: 'ntfy', events: ['backend_down'] }]);
    await r.engine.goDown();
    const [got] = await receiver.wait(1);
    expect(got!.path).toBe('/');
    expect(got!.body).toEqual({
      topic: 'usepod-my-box',
      title: expect.stringMatching(/is down$/),
      message: expect.any(String),
      priority: 4,
      tags: ['warning'],
    });
  });

  it('ntfy behind a sub-path with an access token in the query: posted to that root, the query kept', async () => {
    r = await withAlerts([
      { url: receiver.url('/ntfy/usepod-my-box?auth=dG9rZW4'), format: 'ntfy', events: ['backend_down'] },
    ]);
    await r.engine.goDown();
    const [got] = await receiver.wait(1);
    expect(got!.path).toBe('/ntfy/?auth=dG9rZW4');
    expect(got!.body).toMatchObject({ topic: 'usepod-my-box', priority: 4 });
  });

  it('Discord: content with the title in bold, and no mention can be made by engine text', async () => {
    r = await withAlerts([
      { url: receiver.url('/api/webhooks/1/tok'), format: 'discord', events: ['backend_down'] },
    ]);
    await r.engine.goDown();
    const [got] = await receiver.wait(1);
    expect(got!.body).toEqual({
      username: 'usepod-agent',
      content: expect.stringMatching(/^\*\*usepod-agent on .+ is down\*\*\n/),
      allowed_mentions: { parse: [] },
    });
  });

  it('Slack: mrkdwn text, with <, > and & escaped so no link or @channel is made', async () => {
    r = await withAlerts(
      [{ url: receiver.url('/services/T/B/x'), format: 'slack', events: ['model_withdrawn'] }],
      { config: { selftest: { prompt: 'alerts' } }, timing: { selftestIntervalMs: 30 } },
    );
    r.engine.always({
      kind: 'status',
      status: 500,
      body: '{"error":{"message":"<!channel> out of memory & more"}}',
    });
    const [got] = await receiver.wait(1);
    expect(Object.keys(got!.body)).toEqual(['text']);
    expect(got!.body.text).toMatch(/^\*usepod-agent on .+: Qwen\/Qwen3-14B withdrawn\*\n/);
    expect(got!.body.text).toContain('&lt;!channel&gt; out of memory &amp; more');
    expect(got!.body.text).not.toContain('<!channel>');
  });
});

describe('alert events', () => {
  it('disconnected longer than allowed, and back', async () => {
    // A coordinator that turns connections away until told otherwise (a long deploy).
    let down = false;
    const coordinator = await TestCoordinator.start({
      onConnection: (ws) => {
        if (!down) return false;
        ws.terminate();
        return true;
      },
    });
    try {
      r = await withAlerts(
        [{ url: receiver.url('/x'), events: ['disconnected'], disconnected_after_s: 0.3 }],
        { coordinator },
      );
      down = true;
      r.session.close(1012, 'service restart');
      const [gone] = await receiver.wait(1);
      expect(gone!.body).toMatchObject({ event: 'disconnected', severity: 'critical', resolved: false });
      expect(gone!.body.message).toMatch(/No session with the coordinator for/);
      down = false;
      const [, back] = await receiver.wait(2, 15_000);
      expect(back!.body).toMatchObject({ event: 'disconnected', resolved: true });
    } finally {
      await r?.close();
      r = undefined;
      await coordinator.close();
    }
  });

  it('auth refused', async () => {
    const coordinator = await TestCoordinator.start({
      authorize: () => ({ ok: false, reason: 'provider suspended' }),
    });
    try {
      const t = await import('@usepod-agent/testkit').then((m) =>
        m.createTestAgent({
          coordinator,
          plugins: [vllmPlugin, alerts({ alerts: [{ url: receiver.url('/x') }], timing: FAST })],
          config: { backends: [] },
        }),
      );
      await t.start();
      const [got] = await receiver.wait(1);
      expect(got!.body).toMatchObject({
        event: 'auth_refused',
        severity: 'critical',
        message: expect.stringContaining('provider suspended'),
      });
      await t.close();
    } finally {
      await coordinator.close();
    }
  });

  it('paused and resumed by the GPU rule, not by the owner', async () => {
    r = await withAlerts([{ url: receiver.url('/x'), events: ['gpu_yield'] }]);
    r.t.agent.pause({ reason: 'owner said so' });
    r.t.agent.resume();
    r.hold('gpu', 'GPU in use: game.exe (pid 42)');
    r.release('gpu');
    const [paused, resumed] = await receiver.wait(2);
    expect(paused!.body).toMatchObject({ event: 'gpu_yield', resolved: false });
    expect(paused!.body.message).toMatch(/GPU in use: game\.exe/);
    expect(resumed!.body).toMatchObject({ event: 'gpu_yield', resolved: true });
    await new Promise((res) => setTimeout(res, 100));
    expect(receiver.got).toHaveLength(2);
  });

  it('no job for the idle period while connected, then serving again', async () => {
    r = await withAlerts([{ url: receiver.url('/x'), events: ['idle'], idle_after_h: 0.3 / 3600 }]);
    const [idle] = await receiver.wait(1);
    expect(idle!.body).toMatchObject({ event: 'idle', severity: 'warning' });
    await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done();
    const [, back] = await receiver.wait(2);
    expect(back!.body).toMatchObject({ event: 'idle', resolved: true });
  });

  it('token budget exhausted, told once however many jobs it turns away', async () => {
    r = await withAlerts([{ url: receiver.url('/x'), events: ['budget_exhausted'] }], {
      config: { limits: { max_tokens_per_minute: 10 } },
    });
    r.engine.always({ kind: 'controlled' });
    void r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
    await r.engine.controlled.waitFor();
    for (let i = 0; i < 3; i++)
      expect(await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done()).toMatchObject({
        error_code: 'out_of_capacity',
      });
    const [got] = await receiver.wait(1);
    expect(got!.body).toMatchObject({ event: 'budget_exhausted', details: { limit: 10 } });
    await new Promise((res) => setTimeout(res, 100));
    expect(receiver.got).toHaveLength(1);
    r.engine.reset();
  });
});

describe('delivery', () => {
  it('retries 5xx and 429 with backoff, then delivers once', async () => {
    receiver.script.push({ status: 503 }, { status: 429, headers: { 'retry-after': '0' } });
    r = await withAlerts([{ url: receiver.url('/x'), events: ['gpu_yield'] }]);
    r.hold('gpu', 'GPU in use');
    await receiver.wait(1);
    await new Promise((res) => setTimeout(res, 100));
    expect(receiver.got).toHaveLength(1);
    expect(receiver.script).toEqual([]);
  });

  it('follows no redirect (the body would go elsewhere) and does not retry one', async () => {
    receiver.script.push({ status: 302, headers: { location: receiver.url('/elsewhere') } });
    r = await withAlerts([{ url: receiver.url('/x'), events: ['gpu_yield'] }], { logLevel: 'debug' });
    r.hold('gpu', 'GPU in use');
    for (let i = 0; i < 100 && !r.t.lines.some((l) => l.includes('refused by its webhook')); i++)
      await new Promise((res) => setTimeout(res, 20));
    await new Promise((res) => setTimeout(res, 200));
    expect(receiver.requests).toBe(1);
    expect(receiver.got).toEqual([]);
    expect(r.t.lines.join('\n')).toMatch(/alert refused by its webhook; not retried.*"status":302/);
  });

  it('is rate-limited, and the newest state it held back goes when the bucket has room, saying how many', async () => {
    r = await withAlerts([{ url: receiver.url('/x'), events: ['gpu_yield'], max_per_hour: 3600 }]);
    // A burst of 5 goes (paused, resumed, paused, resumed, paused); the rest wait for the bucket (one a
    // second at 3600 an hour), and only the newest of them, resumed, is sent: the agent serves.
    for (let i = 0; i < 4; i++) {
      r.hold('gpu', `GPU in use ${i}`);
      r.release('gpu');
    }
    expect(await receiver.wait(5)).toHaveLength(5);
    expect(receiver.got.at(-1)!.body).toMatchObject({ resolved: false });
    const got = await receiver.wait(6);
    expect(got[5]!.body).toMatchObject({ event: 'gpu_yield', resolved: true });
    expect(got[5]!.body.message).toMatch(/\(2 earlier alert\(s\) were held back by the rate limit\)$/);
    await new Promise((res) => setTimeout(res, 1_100));
    expect(receiver.got).toHaveLength(6);
  });

  it("each plugin's notices spend their own budget: a noisy plugin does not silence another", async () => {
    const told: Record<string, PluginContext['notify']> = {};
    const teller = (name: string): AgentPlugin => ({
      name,
      apiVersion: 1,
      apply(_hooks, ctx) {
        told[name] = ctx.notify;
      },
    });
    r = await rig({
      plugins: [
        vllmPlugin,
        teller('noisy'),
        teller('ledger'),
        alerts({ alerts: [{ url: receiver.url('/x'), events: ['notice'], max_per_hour: 1 }], timing: FAST }),
      ],
    });
    const notice = { severity: 'warning', title: 't', message: 'm' } as const;
    for (let i = 0; i < 5; i++) told.noisy!({ ...notice, name: `chatter_${i}` });
    told.ledger!({ ...notice, name: 'ledger_failing' });
    const got = await receiver.wait(2, 3_000);
    expect(got.map((g) => g.body.details)).toEqual([
      { plugin: 'noisy', name: 'chatter_0' },
      { plugin: 'ledger', name: 'ledger_failing' },
    ]);
  });

  it('never logs the webhook URL path, where its secret is', async () => {
    receiver.script.push({ status: 404 });
    r = await rig({
      plugins: [
        vllmPlugin,
        alerts({ alerts: [{ url: receiver.url('/hooks/s3cr3t-T0KEN'), format: 'slack' }], timing: FAST }),
      ],
      logLevel: 'debug',
    });
    r.hold('gpu', 'GPU busy');
    for (let i = 0; i < 100 && !r.t.lines.some((l) => l.includes('refused by its webhook')); i++)
      await new Promise((res) => setTimeout(res, 20));
    const log = r.t.lines.join('\n');
    expect(log).toMatch(/alert refused by its webhook.*slack http:\/\/127\.0\.0\.1:\d+\/…/);
    expect(log).not.toContain('s3cr3t-T0KEN');
  });

  it('an event tap that throws is logged and never reaches the agent or the other taps', async () => {
    const seen: string[] = [];
    r = await rig({
      plugins: [
        vllmPlugin,
        {
          name: 'throws',
          apiVersion: 1,
          apply(hooks) {
            hooks.onEvent.tap('boom', (e) => {
              if (['connected', 'paused', 'resumed'].includes(e.type)) throw new Error('boom');
            });
            hooks.onEvent.tap('after', (e) => {
              if (['connected', 'paused', 'resumed'].includes(e.type)) seen.push(e.type);
            });
          },
        },
      ],
      logLevel: 'debug',
    });
    r.t.agent.pause();
    r.t.agent.resume();
    expect(seen).toEqual(['connected', 'paused', 'resumed']);
    expect(r.t.lines.filter((l) => l.includes('onEvent tap failed'))).toHaveLength(3);
  });
});
