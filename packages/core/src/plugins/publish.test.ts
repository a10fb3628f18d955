import { describe, expect, it } from 'vitest';
import { createAgent } from '../agent/agent.js';
import { silentLogger } from '../observability/log.js';
import type { AgentEvent } from './hooks.js';
import { type AgentPlugin, PLUGIN_API_VERSION, type PluginContext } from './plugin.js';

/**
 * `ctx.publish` (issue 31): one plugin tells the others a fact on the observation stream (the GPU
 * plugin's energy per job, which the ledger records). Core names the sender, and hands the receivers a
 * frozen JSON copy within bounds; a topic or value outside the rules is a coded error for the sender.
 */
async function agentWith(): Promise<{ ctx: PluginContext; heard: AgentEvent[] }> {
  let ctx: PluginContext | undefined;
  const heard: AgentEvent[] = [];
  const sender: AgentPlugin = {
    name: 'meter',
    apiVersion: PLUGIN_API_VERSION,
    apply(_hooks, c) {
      ctx = c;
    },
  };
  const receiver: AgentPlugin = {
    name: 'book',
    apiVersion: PLUGIN_API_VERSION,
    apply(hooks) {
      hooks.onEvent.tap('book', (e) => {
        if (e.type === 'plugin') heard.push(e);
      });
    },
  };
  const agent = createAgent({
    config: { coordinator: { url: 'wss://coordinator.invalid/ws' }, backends: [] },
    plugins: [sender, receiver],
    defaultPlugins: false,
    logger: silentLogger,
    pluginSearchRoots: [],
  });
  await agent.load();
  return { ctx: ctx!, heard };
}

describe('ctx.publish', () => {
  it('delivers a frozen copy, named by its sender, to the other plugins’ onEvent taps', async () => {
    const { ctx, heard } = await agentWith();
    const data = { jobId: 'j1', wh: 0.25, parts: [1, 2] };
    ctx.publish('energy.job', data);
    expect(heard).toEqual([{ type: 'plugin', from: 'meter', topic: 'energy.job', data }]);
    const got = heard[0] as Extract<AgentEvent, { type: 'plugin' }>;
    expect(got.data).not.toBe(data);
    expect(Object.isFrozen(got.data)).toBe(true);
    expect(Object.isFrozen((got.data as { parts: number[] }).parts)).toBe(true);
    // The sender changing its object later changes nothing the receivers got.
    data.wh = 99;
    expect((got.data as { wh: number }).wh).toBe(0.25);
  });

  it('refuses a bad topic, a value that is not JSON, and one over 16 KiB, in one coded line', async () => {
    const { ctx, heard } = await agentWith();
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const [topic, data, why] of [
      ['Energy\u001b[2J', 1, /published on the topic "Energy \[2J"/],
      ['', 1, /topic ""/],
      ['x', cycle, /not JSON/],
      ['x', 10n, /not JSON/],
      ['x', undefined, /not JSON/],
      ['x', 'y'.repeat(17 * 1024), /over 16384/],
    ] as const) {
      let err: unknown;
      try {
        ctx.publish(topic, data);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'USEPOD_PLUGIN_INVALID', message: expect.stringMatching(why) });
      expect((err as Error).message).toMatch(/^plugin "meter" published/);
    }
    expect(heard).toEqual([]);
  });
});
