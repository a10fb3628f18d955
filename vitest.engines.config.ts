import { defineConfig } from 'vitest/config';

/**
 * The real-engine tier: llama.cpp's own `llama-server` (Debian sid's build, set up by the testkit's
 * script in a cache folder) with tiny random-weight models. `npm run test:engines`; .ci/run runs it after
 * `npm test`. USEPOD_SKIP_REAL_ENGINES=1 skips it, saying so.
 */
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['test/real-engine/**/*.test.ts'],
    globalSetup: ['test/real-engine/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One file at a time: each starts servers, and the machine has two cores.
    maxWorkers: 1,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
