#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execute } from '@oclif/core/execute';
import { settings } from '@oclif/core/settings';
import { normalizeArgv } from '../dist/argv.js';

// Always the compiled commands: with NODE_ENV=development or test (common on a developer's machine) oclif
// would otherwise look for TypeScript sources next to them and fail on the shipped src/*.ts.
settings.enableAutoTranspile = false;

// With oclif.manifest.json oclif imports only the command it runs (--help none): 170 modules instead of
// 760 (decision 0008). The package ships one made at pack time; a checkout's is remade here after each
// build (the build leaves dist/.tsbuildinfo, which the package does not ship), so it is never stale.
const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return undefined;
  }
};
const built = mtime('../dist/.tsbuildinfo');
if (built !== undefined && built > (mtime('../oclif.manifest.json') ?? 0)) {
  // In a process of its own: making it imports every command (~450 modules), which this process (an
  // agent's `run`, for days) would otherwise keep (7 MB of heap; decision 0008's third pass).
  const script = fileURLToPath(new URL('../scripts/manifest.js', import.meta.url));
  const made = spawnSync(process.execPath, [script], { stdio: 'ignore' });
  // Without a manifest oclif finds the commands itself, and reports a broken one as it would have. A
  // user who may not write the checkout (another one's clone, a test run as `nobody`) can do neither:
  // the manifest there stays, as it was, rather than the command failing on its removal.
  if (made.status !== 0) {
    try {
      rmSync(new URL('../oclif.manifest.json', import.meta.url), { force: true });
    } catch {}
  }
}

// 0.3.x command lines: no command runs the agent; global flags may come before the command (argv.ts).
await execute({ dir: import.meta.url, args: normalizeArgv(process.argv.slice(2)) });
