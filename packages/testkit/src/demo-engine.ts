import type { EngineEmulator } from './emulators/base.js';
import { VllmEmulator } from './emulators/vllm.js';

/**
 * The engine of `usepod-agent demo`: an emulated vLLM serving two well-known models, streaming at a pace a
 * person can watch. Here, so that the CLI itself names no engine (issue 16): it asks for the kind and
 * finds the plugin for it among those it ships.
 */
export async function startDemoEngine(): Promise<{ kind: string; engine: EngineEmulator }> {
  const engine = await new VllmEmulator({
    models: [
      { id: 'meta-llama/Llama-3.3-70B-Instruct', contextWindow: 131072 },
      { id: 'Qwen/Qwen3-14B', contextWindow: 32768 },
    ],
    tokenDelayMs: 15,
  }).start();
  return { kind: engine.kind, engine };
}
