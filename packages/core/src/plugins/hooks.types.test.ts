import { describe, expect, expectTypeOf, it } from 'vitest';
import type { BackendModel } from '../backend/backend.js';
import type { AuthResponseFrame, CapabilityModel } from '../protocol/frames.js';
import {
  type AgentEvent,
  createHooks,
  type JobContext,
  type JobHandle,
  type PausedBy,
  type PluginHooks,
  pluginView,
} from './hooks.js';
import { definePlugin, PLUGIN_API_VERSION } from './plugin.js';

/**
 * Type tests: checked by `tsc -p tsconfig.test.json` in `npm run lint`. A plugin cannot fire a hook,
 * and every hook callback is typed. The runtime part proves the view really has no `call`/`promise`.
 */
describe('plugin hook types', () => {
  it('gives plugins typed callbacks and no way to fire hooks', () => {
    const plugin = definePlugin(() => ({
      name: 'typed',
      apiVersion: PLUGIN_API_VERSION,
      apply(hooks, ctx) {
        // A plugin's message to the others: any topic string, any value (checked at run time).
        expectTypeOf(ctx.publish).parameters.toEqualTypeOf<[string, unknown]>();
        hooks.beforeAuth.tap('t', (frame) => {
          expectTypeOf(frame).toEqualTypeOf<AuthResponseFrame>();
          return { ...frame, extra: 1 };
        });
        hooks.onCapabilities.tap({ name: 't', stage: 1000 }, (models) => {
          expectTypeOf(models).toEqualTypeOf<CapabilityModel[]>();
          return models.filter((m) => m.output_per_1m > 0);
        });
        hooks.onJob.tapPromise('t', async (job) => {
          expectTypeOf(job).toEqualTypeOf<JobContext>();
          expectTypeOf(job.frame.model_id).toBeString();
          return undefined;
        });
        hooks.onStart.tapPromise('t', async (info) => {
          expectTypeOf(info.providerId).toEqualTypeOf<string | undefined>();
        });
        hooks.onDiscovery.tap('t', (models) => {
          expectTypeOf(models).toEqualTypeOf<readonly BackendModel[]>();
        });
        hooks.onEvent.tap('t', (event) => {
          expectTypeOf(event).toEqualTypeOf<AgentEvent>();
          // The union narrows by type: each event carries its own facts.
          if (event.type === 'model_withdrawn') expectTypeOf(event.model).toBeString();
          if (event.type === 'model_withdrawn')
            expectTypeOf(event.cause).toEqualTypeOf<'selftests' | 'jobs'>();
          if (event.type === 'paused') expectTypeOf(event.by).toEqualTypeOf<PausedBy>();
          // Another plugin's data is unknown to the receiver: it must parse it before use.
          if (event.type === 'plugin') {
            expectTypeOf(event.data).toBeUnknown();
            expectTypeOf(event.from).toBeString();
          }
        });
        // @ts-expect-error onEvent is sync: observers queue their I/O
        hooks.onEvent.tapPromise;
        // @ts-expect-error a plugin cannot fire a hook
        hooks.onJob.promise;
        // @ts-expect-error a plugin cannot fire a hook
        hooks.onCapabilities.call;
        // @ts-expect-error a plugin cannot intercept other plugins' taps
        hooks.onJob.intercept;
        // @ts-expect-error onCapabilities taps must return the model list
        hooks.onCapabilities.tap('bad', (_models: CapabilityModel[]) => 42);
        // @ts-expect-error onJob taps return a JobHandle or undefined
        hooks.onJob.tap('bad', () => 'backend');
      },
    }));
    expectTypeOf(plugin).parameter(0).toBeVoid();
    expectTypeOf<JobHandle>().toHaveProperty('backend');
  });

  it('exposes only tap and tapPromise at run time', () => {
    const view: PluginHooks = pluginView(createHooks(), 'p');
    for (const hook of Object.values(view)) {
      expect(Object.keys(hook).sort()).toEqual(['tap', 'tapPromise']);
      expect(Object.isFrozen(hook)).toBe(true);
    }
    expect(Object.isFrozen(view)).toBe(true);
  });

  it('tags an error thrown in a tap with the plugin and the hook', async () => {
    const hooks = createHooks();
    pluginView(hooks, 'pricing-plugin').onCapabilities.tap('boom', () => {
      throw new Error('bad price table');
    });
    await expect(hooks.onCapabilities.promise([])).rejects.toMatchObject({
      code: 'USEPOD_PLUGIN_HOOK_FAILED',
      plugin: 'pricing-plugin',
      hook: 'onCapabilities',
      message: 'plugin "pricing-plugin" failed in hook "onCapabilities": bad price table',
    });
  });
});
