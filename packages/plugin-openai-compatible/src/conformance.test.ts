import { OpenAIEmulator, runConformance } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';

// The generic `openai` kind takes a base URL that already ends in the API prefix.
runConformance({
  plugin,
  kind: 'openai',
  model: 'openai/gpt-oss-20b',
  emulator: () => new OpenAIEmulator({ prefix: '', apiKey: 'sk-test-conformance' }).start(),
  backend: { api_key_env: 'UPSTREAM_KEY' },
  env: { UPSTREAM_KEY: 'sk-test-conformance' },
  test: { describe, it, beforeAll, afterAll },
});
