import { runConformance, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';

runConformance({
  plugin,
  kind: 'vllm',
  model: 'Qwen/Qwen3-14B',
  emulator: () => new VllmEmulator().start(),
  test: { describe, it, beforeAll, afterAll },
});
