import { defineConfig } from 'vitest/config';

/**
 * The release rehearsal (test/release): a real npm registry (verdaccio), every public package packed and
 * published, the CLI installed globally from it, third-party plugins built outside the repository and
 * installed by name. `npm run test:release`; .ci/run runs it after `npm test` (it takes minutes, not
 * seconds: real npm installs).
 */
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['test/release/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
