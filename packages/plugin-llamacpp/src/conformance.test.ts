import { LlamacppEmulator, runConformance } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';

runConformance({
  plugin,
  kind: 'llamacpp',
  model: '../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf',
  emulator: () => new LlamacppEmulator().start(),
  test: { describe, it, beforeAll, afterAll },
});
