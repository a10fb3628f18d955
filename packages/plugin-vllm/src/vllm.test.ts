import { silentLogger } from '@usepod-agent/core';
import { VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { parseVllmMetrics, VllmBackend } from './index.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function setup(opts: ConstructorParameters<typeof VllmEmulator>[0] = {}, apiKey?: string) {
  const engine = await new VllmEmulator(opts).start();
  const backend = new VllmBackend({ url: engine.url, log: silentLogger, ...(apiKey ? { apiKey } : {}) });
  open.push(backend, engine);
  return { engine, backend };
}

describe('vLLM backend', () => {
  it('reports models with max_model_len as the context window, and engine load from /metrics', async () => {
    const { engine, backend } = await setup({
      models: [
        { id: 'a', contextWindow: 32768 },
        { id: 'b', contextWindow: 8192 },
      ],
    });
    engine.metrics = { running: 3, waiting: 2, kvCache: 0.42 };
    const s = await backend.probe();
    expect(s).toEqual({
      healthy: true,
      // vLLM 0.30 serves Anthropic /v1/messages itself (since ~0.12).
      models: [
        { id: 'a', contextWindow: 32768, anthropicNative: true },
        { id: 'b', contextWindow: 8192, anthropicNative: true },
      ],
      load: { running: 6, waiting: 4, kvCacheUsage: 0.42 },
    });
  });

  it('is unhealthy while loading (connection refused) and when /health answers 503', async () => {
    const { engine, backend } = await setup();
    await engine.goDown();
    const loading = await backend.probe();
    expect(loading.healthy).toBe(false);
    expect(loading.detail).toMatch(/ECONNREFUSED/);
    await engine.comeUp();
    expect((await backend.probe()).healthy).toBe(true);
    engine.dead = true;
    expect(await backend.probe()).toMatchObject({
      healthy: false,
      detail: 'engine is dead (/health answered 503)',
    });
  });

  it('sends the API key to /v1 routes; a wrong key makes it unhealthy with a clear reason', async () => {
    const { engine, backend } = await setup({ apiKey: 'secret-key-1' }, 'secret-key-1');
    expect((await backend.probe()).healthy).toBe(true);
    expect(engine.requests.items.find((r) => r.path === '/v1/models')?.headers.authorization).toBe(
      'Bearer secret-key-1',
    );
    // /health and /metrics are open: no key is needed there.
    engine.apiKey = 'rotated-key';
    const s = await backend.probe();
    expect(s.healthy).toBe(false);
    expect(s.detail).toMatch(/401: Unauthorized/);
  });

  it('parses both KV-cache metric names, preferring the new one', () => {
    expect(parseVllmMetrics('vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.3\n')).toEqual({
      running: 0,
      waiting: 0,
      kvCacheUsage: 0.3,
    });
    expect(
      parseVllmMetrics(
        'vllm:gpu_cache_usage_perc{engine="0"} 0.3\nvllm:kv_cache_usage_perc{engine="0"} 0.5\n# HELP x\n',
      ).kvCacheUsage,
    ).toBe(0.5);
  });
});
