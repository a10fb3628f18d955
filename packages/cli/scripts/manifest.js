#!/usr/bin/env node
// oclif.manifest.json (commands, flags, hooks), so the CLI answers --help and finds a command without
// importing every command file (and everything they import). `prepack` writes it for the package; in a
// checkout bin/run.js remakes it whenever the build is newer than it (oclif trusts a manifest over the
// commands on disk, so a stale one would hide new commands); `postpack` removes the packed one.
// Built with @oclif/core's own Plugin loader, the way oclif's `manifest` command does it.
import { rename, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Plugin, settings } from '@oclif/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const file = new URL('../oclif.manifest.json', import.meta.url);

/** Writes the manifest of the compiled commands; returns how many there are. */
export async function writeManifest() {
  // The compiled commands, whatever NODE_ENV says: under development or test oclif would record src/*.ts.
  settings.enableAutoTranspile = false;
  const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true });
  await plugin.load();
  const commands = Object.keys(plugin.manifest.commands);
  if (commands.length === 0) throw new Error('no commands found: build first (tsc -b)');
  const stray = Object.values(plugin.manifest.commands).find((c) => c.relativePath?.[0] !== 'dist');
  if (stray) throw new Error(`command ${stray.id} is not from dist/: ${stray.relativePath?.join('/')}`);
  // Written aside and renamed: CLI processes started together may remake it at once, and one of them
  // must never read half a file.
  const tmp = new URL(`../oclif.manifest.json.${process.pid}.tmp`, import.meta.url);
  await writeFile(tmp, `${JSON.stringify(plugin.manifest, null, 2)}\n`);
  await rename(tmp, file);
  return commands.length;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === 'clean') await rm(file, { force: true });
  else process.stderr.write(`oclif.manifest.json: ${await writeManifest()} commands\n`);
}
