import { describe, expect, it } from 'vitest';
import type { Backend, BackendModel } from '../backend/backend.js';
import { validateConfig } from '../config/validate.js';
import { buildModelEntries, capabilitiesFrame } from './capabilities.js';

function backend(kind: string): Backend {
  return {
    kind,
    label: `${kind}@x`,
    url: 'http://x',
    probe: async () => ({ healthy: true, models: [] }),
    stream: async () => {
      throw new Error('unused');
    },
    close: async () => {},
  };
}
const served = (b: Backend, ...models: BackendModel[]) => models.map((model) => ({ backend: b, model }));

describe('capabilities (PROTOCOL.md section 3)', () => {
  const config = validateConfig({
    pricing: {
      default_input_per_1m: 500_000,
      default_output_per_1m: 750_000,
      models: {
        'meta-llama/Llama-3.3-70B-Instruct': { input_per_1m: 300_000, output_per_1m: 450_000 },
        'free/model': { input_per_1m: 0, output_per_1m: 100 },
      },
    },
    limits: { max_concurrent: 8, max_tokens_per_minute: 200_000 },
  });

  it('resolves prices, sorts by model id, dedupes, and drops zero prices', () => {
    const vllm = backend('vllm');
    const ollama = backend('ollama');
    // Each kind's priority is its plugin's word (BackendKind.priority).
    const priority = (kind: string) => ({ vllm: 10, ollama: 40 })[kind] ?? 100;
    const entries = buildModelEntries(
      config,
      [
        ...served(ollama, { id: 'zeta' }, { id: 'meta-llama/Llama-3.3-70B-Instruct', contextWindow: 8192 }),
        ...served(
          vllm,
          { id: 'meta-llama/Llama-3.3-70B-Instruct', contextWindow: 131072 },
          { id: 'free/model' },
          { id: 'Alpha' },
        ),
      ],
      priority,
    );
    expect(entries).toEqual([
      {
        model_id: 'Alpha',
        input_per_1m: 500_000,
        output_per_1m: 750_000,
        max_concurrent: 8,
        backend: 'vllm',
      },
      {
        model_id: 'meta-llama/Llama-3.3-70B-Instruct',
        input_per_1m: 300_000,
        output_per_1m: 450_000,
        max_concurrent: 8,
        // The preferred kind is advertised; the window is one every route honours.
        backend: 'vllm',
        context_window: 8192,
      },
      {
        model_id: 'zeta',
        input_per_1m: 500_000,
        output_per_1m: 750_000,
        max_concurrent: 8,
        backend: 'ollama',
      },
    ]);
  });

  it('omits context_window when unknown and reports the limits', () => {
    const frame = capabilitiesFrame(
      config,
      buildModelEntries(config, served(backend('vllm'), { id: 'a' })),
      '0.4.0',
    );
    expect(frame).toEqual({
      type: 'capabilities',
      models: [
        { model_id: 'a', input_per_1m: 500_000, output_per_1m: 750_000, max_concurrent: 8, backend: 'vllm' },
      ],
      limits: { max_concurrent_total: 8, max_tokens_per_minute: 200_000 },
      metadata: { agent_version: '0.4.0' },
    });
    expect('context_window' in frame.models[0]!).toBe(false);
  });

  it('sends max_tokens_per_minute null when no limit is set, and an empty list with no backend', () => {
    const frame = capabilitiesFrame(validateConfig({}), [], '0.4.0');
    expect(frame.limits).toEqual({ max_concurrent_total: 8, max_tokens_per_minute: null });
    expect(frame.models).toEqual([]);
  });

  it('uses an upstream price (with markup applied by the plugin) when config names none', () => {
    const entries = buildModelEntries(
      config,
      served(backend('openrouter'), {
        id: 'x/y',
        upstreamPrice: { input_per_1m: 1_050_000, output_per_1m: 2_100_000 },
      }),
    );
    expect(entries[0]).toMatchObject({
      input_per_1m: 1_050_000,
      output_per_1m: 2_100_000,
      backend: 'openrouter',
    });
  });

  it('advertises no more concurrency than the engines serving a model run at once, when they all say', () => {
    const lms = backend('lmstudio');
    const llama = backend('llamacpp');
    const vllm = backend('vllm');
    const entries = buildModelEntries(config, [
      { backend: lms, model: { id: 'a' }, capacity: 2 },
      { backend: llama, model: { id: 'a' }, capacity: 1 },
      { backend: lms, model: { id: 'b' }, capacity: 4 },
      { backend: vllm, model: { id: 'b' } },
    ]);
    expect(entries.map((e) => [e.model_id, e.max_concurrent])).toEqual([
      ['a', 3],
      ['b', 8],
    ]);
  });
});
