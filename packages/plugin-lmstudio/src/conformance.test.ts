import { LmstudioEmulator, runConformance } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';

runConformance({
  plugin,
  kind: 'lmstudio',
  model: 'qwen3-8b',
  emulator: () => new LmstudioEmulator().start(),
  test: { describe, it, beforeAll, afterAll },
});
