import { defineConfig } from 'vitest/config';

/**
 * The browser tier (test/browser): the dashboard driven in Debian's Chromium by playwright-core, against
 * a real agent, TestCoordinator and engine emulator on 127.0.0.1. `npm run test:browser`; .ci/run runs it
 * after the container tier (it installs Debian's `chromium` when it is missing). It writes the README's
 * screenshots to docs/images/.
 */
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['test/browser/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 1,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
