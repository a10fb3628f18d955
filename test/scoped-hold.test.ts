import type { AgentPlugin, PluginContext } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { render } from '../packages/cli/src/commands/status.js';
import { Observed, pageState } from '../packages/plugin-dashboard/src/state.js';
import { hello, type Rig, rig } from './helpers.js';

/**
 * A hold scoped to backends (issue 31 point 4: the heat guard withdraws a hot GPU's engines only), over
 * real sockets: engines `a` and `b` serve one model, `c` another. Holding `a` and `c` leaves the shared
 * model offered and routed to `b`, withdraws `c`'s model (its job is refused `out_of_capacity`, not
 * `model_not_loaded`), and never pauses the agent; releasing it offers everything again.
 */
const SHARED = 'Qwen/Qwen3-14B';
const ALONE = 'other/Model-7B';

let r: Rig | undefined;
const engines: VllmEmulator[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const e of engines.splice(0)) await e.close();
});

const ids = (f: Record<string, unknown>) =>
  (f.models as { model_id: string }[]).map((m) => m.model_id).sort();

describe('a hold scoped to backends', () => {
  it('withdraws only their models: a shared model routes to the unheld engine, the agent is not paused', async () => {
    const a = await new VllmEmulator().start();
    const b = await new VllmEmulator().start();
    const c = await new VllmEmulator({ models: [{ id: ALONE, contextWindow: 8192 }] }).start();
    engines.push(b, c);
    let ctx: PluginContext | undefined;
    const holder: AgentPlugin = {
      name: 'test:scoped',
      apiVersion: 1,
      apply: (_hooks, c) => {
        ctx = c;
      },
    };
    r = await rig({
      engine: a,
      extraEngines: [b, c],
      plugins: [vllmPlugin, holder],
      config: {
        backends: [
          { kind: 'vllm', url: a.url, name: 'a' },
          { kind: 'vllm', url: b.url, name: 'b' },
          { kind: 'vllm', url: c.url, name: 'c' },
        ],
        observability: { prometheus_addr: '127.0.0.1:0' },
      },
    });
    const { session, t } = r;
    expect(ctx!.agent.backends().map((x) => x.label)).toEqual(['a', 'b', 'c']);
    expect(ids(await session.capabilities())).toEqual([SHARED, ALONE]);

    const withdrawn = session.nextFrame('capabilities');
    ctx!.hold('heat', { reason: 'GPU 1 too hot', backends: ['a', 'c'] });
    expect(ids(await withdrawn)).toEqual([SHARED]);
    const before = a.requests.items.length;
    expect(await session.dispatch({ model_id: SHARED, request: hello }).done()).toMatchObject({
      type: 'job_done',
    });
    expect(a.requests.items.length).toBe(before);
    expect(await session.dispatch({ model_id: ALONE, request: hello }).done()).toMatchObject({
      type: 'job_error',
      error_code: 'out_of_capacity',
      message: expect.stringContaining('GPU 1 too hot'),
    });
    const status = t.agent.status();
    expect(status.paused).toBeNull();
    expect(status.holds).toEqual([expect.objectContaining({ by: 'heat', backends: ['a', 'c'] })]);
    expect(t.agent.readiness()).toEqual({ ready: true });
    const shown = render(status, '127.0.0.1:0');
    expect(shown).toMatch(/^ {2}HELD {10}by heat: GPU 1 too hot \(withdrawn: a, c\)$/m);
    expect(shown).not.toMatch(/PAUSED/);
    // The dashboard: the shared model is not served by `a` (held), it is by `b`; the agent is online.
    const page = pageState(status, [], new Observed());
    expect(page.ready && page.state.code).toBe('online');
    const why = (label: string) =>
      page.ready ? page.backends.find((x) => x.label === label)?.models.map((m) => m.why) : undefined;
    expect([why('a'), why('b'), why('c')]).toEqual([
      ['held: GPU 1 too hot'],
      [null],
      ['held: GPU 1 too hot'],
    ]);

    const back = session.nextFrame('capabilities');
    ctx!.release('heat');
    expect(ids(await back)).toEqual([SHARED, ALONE]);
    expect(await session.dispatch({ model_id: ALONE, request: hello }).done()).toMatchObject({
      type: 'job_done',
    });
  });
});
