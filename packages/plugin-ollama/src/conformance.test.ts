import { OllamaEmulator, runConformance } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';

runConformance({
  plugin,
  kind: 'ollama',
  model: 'llama3.2:3b',
  emulator: () => new OllamaEmulator().start(),
  test: { describe, it, beforeAll, afterAll },
});
