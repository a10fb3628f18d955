import { silentLogger } from '@usepod-agent/core';
import { OllamaEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { OllamaBackend } from './index.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

describe('Ollama backend', () => {
  it('offers installed models: the allocated window when loaded, else the Modelfile num_ctx or the default, capped by training', async () => {
    const engine = await new OllamaEmulator({
      models: [
        { id: 'llama3.2:3b', contextWindow: 8192, trainContext: 131072, loaded: true },
        { id: 'qwen3:8b', trainContext: 40960, loaded: false },
        { id: 'tiny:1b', trainContext: 2048, loaded: false },
        { id: 'long:7b', trainContext: 131072, loaded: false, numCtx: 32768 },
        { id: 'nomic-embed-text:latest', type: 'embedding', loaded: false },
        { id: 'gpt-oss:120b-cloud', remote: true },
      ],
    }).start();
    const backend = new OllamaBackend({ url: engine.url, log: silentLogger, numParallel: 2 });
    open.push(backend, engine);
    const s = await backend.probe();
    expect(s.healthy).toBe(true);
    // Each model runs OLLAMA_NUM_PARALLEL requests at once: its own capacity, not the server's total.
    expect(s.models).toEqual([
      { id: 'llama3.2:3b', contextWindow: 8192, capacity: 2, anthropicNative: true },
      { id: 'qwen3:8b', contextWindow: 4096, capacity: 2, anthropicNative: true },
      { id: 'tiny:1b', contextWindow: 2048, capacity: 2, anthropicNative: true },
      { id: 'long:7b', contextWindow: 32768, capacity: 2, anthropicNative: true },
    ]);
    // /api/show is asked once per model digest, not on every probe.
    await backend.probe();
    expect(engine.requests.items.filter((r) => r.path === '/api/show')).toHaveLength(5);
  });

  it('is unhealthy when the server is down', async () => {
    const engine = await new OllamaEmulator().start();
    const backend = new OllamaBackend({ url: engine.url, log: silentLogger });
    open.push(backend, engine);
    await engine.goDown();
    expect((await backend.probe()).healthy).toBe(false);
  });
});
