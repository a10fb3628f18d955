#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execute } from '@oclif/core/execute';
import { settings } from '@oclif/core/settings';
import { normalizeArgv } from '../dist/argv.js';
import { unreadableOclifFile, unsafePluginRoot } from '../dist/oclif-files.js';

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

// oclif reads its theme and its plugin root's package.json files at every start with a blocking read: one
// that is a FIFO froze every command for good. Named in one line instead, before oclif starts.
const unreadable = unreadableOclifFile();
if (unreadable) {
  process.stderr.write(
    `usepod-agent: ${unreadable} (USEPOD_CONFIG_UNREADABLE)\n  hint: remove it, or make it a regular file\n`,
  );
  process.exit(2);
}
// oclif loads the plugins its plugin root lists, and `run` imports them into the agent: a root another
// local user could change is their code in this user's agent. Named in one line instead, before oclif.
const unsafe = unsafePluginRoot();
if (unsafe) {
  process.stderr.write(
    `usepod-agent: ${unsafe}: the CLI loads plugins from there at every start (USEPOD_CONFIG_UNSAFE)\n  hint: make it yours and writable by you alone (chown, chmod go-w), or remove it\n`,
  );
  process.exit(2);
}

// 0.3.x command lines: no command runs the agent; global flags may come before the command (argv.ts).
await execute({ dir: import.meta.url, args: normalizeArgv(process.argv.slice(2)) });
// The command is over (`run` returns only once its agent stopped; errors already exited). A plugin's module
// may have left a timer or socket open when it was imported: that kept `plugins`, `validate` or `backends`
// from ever exiting. Unref'd: a process with nothing left open ends at once, as before.
setTimeout(() => process.exit(), 2_000).unref();
