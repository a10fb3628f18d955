import { runConformance } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import plugin from './index.js';
import { TgiEmulator } from './tgi-emulator.js';

runConformance({
  plugin,
  kind: 'tgi',
  model: 'HuggingFaceH4/zephyr-7b-beta',
  emulator: () => new TgiEmulator().start(),
  // TGI's own "no such model" reply: a flat error, 404.
  notFound: {
    status: 404,
    body: JSON.stringify({ error: 'Model not found', error_type: 'model_not_found' }),
  },
  test: { describe, it, beforeAll, afterAll },
});
