#!/usr/bin/env node
import { rmSync, statSync } from 'node:fs';
import { execute, settings } from '@oclif/core';
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
  try {
    await (await import('../scripts/manifest.js')).writeManifest();
  } catch {
    // Without a manifest oclif finds the commands itself, and reports a broken one as it would have.
    rmSync(new URL('../oclif.manifest.json', import.meta.url), { force: true });
  }
}

// 0.3.x command lines: no command runs the agent; global flags may come before the command (argv.ts).
await execute({ dir: import.meta.url, args: normalizeArgv(process.argv.slice(2)) });
