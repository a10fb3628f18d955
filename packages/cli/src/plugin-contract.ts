import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type { Config } from '@oclif/core/interfaces';
import { isUsepodError, MAX_PACKAGE_JSON, readLocalTextSync } from '@usepod-agent/core';
import { importPlugin } from '@usepod-agent/core/cli';
import { shareCore } from './shared-core.js';

/**
 * `plugins install` and `plugins link` refuse a backend plugin built for another contract (issue 16):
 * the same check `run` makes (its `apiVersion` literal, its `core` range), made right after the package
 * arrives, and the package is removed again when it fails. A package that is not a backend plugin at all
 * (an ordinary oclif plugin) is left alone.
 */
export async function refuseIncompatible(
  config: Config,
  name: string,
  root: string,
): Promise<string | undefined> {
  let entry: string;
  try {
    entry = createRequire(join(root, 'package.json')).resolve(name);
  } catch {
    return undefined;
  }
  try {
    shareCore();
    await importPlugin(entry, name);
    return undefined;
  } catch (err) {
    if (!isUsepodError(err, 'USEPOD_PLUGIN_API_MISMATCH')) return undefined;
    await config.runCommand('plugins:uninstall', [name]).catch(() => {});
    return `${err.message} (${err.code}); it was not kept`;
  }
}

/** The name in a folder's package.json (what `plugins link PATH` linked). */
export function packageNameAt(path: string): string | undefined {
  // A FIFO or device in its place is never waited on or read whole.
  const pkg = readLocalTextSync(join(resolve(path), 'package.json'), MAX_PACKAGE_JSON);
  if (pkg.kind !== 'text') return undefined;
  try {
    return (JSON.parse(pkg.text) as { name?: string }).name;
  } catch {
    return undefined;
  }
}
