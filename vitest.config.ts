import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Tests run against the TypeScript sources of sibling packages (the `source` export condition), not a stale dist/.
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'examples/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    // The real-engine tier, the release rehearsal, the container and browser tiers run on their own:
    // `npm run test:engines`, `test:release`, `test:container`, `test:browser` (their own vitest.*.config.ts).
    exclude: [
      'test/real-engine/**',
      'test/release/**',
      'test/container/**',
      'test/browser/**',
      '**/node_modules/**',
    ],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // Two cores: keep the files in flight to what the machine can run without starving sockets.
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
