#!/usr/bin/env node
// `prepack`: writes oclif.manifest.json (commands, flags, hooks) so an installed CLI answers --help and
// finds commands without importing every command file; `postpack` removes it, because oclif trusts a
// manifest over the source and a stale one would hide new commands in this checkout.
// Built with @oclif/core's own Plugin loader, the way oclif's `manifest` command does it.
import { rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Plugin, settings } from '@oclif/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const file = new URL('../oclif.manifest.json', import.meta.url);
if (process.argv[2] === 'clean') {
  await rm(file, { force: true });
} else {
  // The compiled commands, whatever NODE_ENV says: under development or test oclif would record src/*.ts.
  settings.enableAutoTranspile = false;
  const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true });
  await plugin.load();
  const commands = Object.keys(plugin.manifest.commands);
  if (commands.length === 0) throw new Error('no commands found: build first (tsc -b)');
  const stray = Object.values(plugin.manifest.commands).find((c) => c.relativePath?.[0] !== 'dist');
  if (stray) throw new Error(`command ${stray.id} is not from dist/: ${stray.relativePath?.join('/')}`);
  await writeFile(file, `${JSON.stringify(plugin.manifest, null, 2)}\n`);
  process.stderr.write(`oclif.manifest.json: ${commands.length} commands\n`);
}
