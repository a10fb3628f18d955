import { defineConfig } from 'vitest/config';

/**
 * The container tier (test/container): the repository's Dockerfile built and run under podman on a
 * debootstrap base image. `npm run test:container`; .ci/run runs it last (it installs podman, runc and
 * debootstrap from Debian's packages when they are missing).
 */
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['test/container/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    pool: 'forks',
    maxWorkers: 1,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
