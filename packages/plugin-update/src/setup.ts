import { copyFile, mkdir, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installVersion } from './npm.js';
import { files, VERSION } from './state.js';

/** The launcher as this package ships it; `setup` copies it into the folder, where releases never touch it. */
export const LAUNCHER_SOURCE = fileURLToPath(new URL('../launcher/launcher.mjs', import.meta.url));
export const launcherIn = (dir: string) => join(dir, 'launcher.mjs');

/** Points `current` or `previous` at versions/<v>: a new link renamed over the old, never a moment without. */
export async function pointLink(dir: string, name: 'current' | 'previous', version: string): Promise<void> {
  if (!VERSION.test(version)) throw new Error(`"${version}" is not a version`);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  await rm(tmp, { force: true });
  await symlink(join('versions', version), tmp);
  await rename(tmp, join(dir, name));
}

/**
 * Makes the side-by-side folder for the version that runs now: installs it into versions/<v> with the npm
 * beside node, points `current` at it and copies the launcher in. Returns the launcher's path.
 */
export async function setup(dir: string, version: string, registry: string | undefined): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await installVersion(files(dir).versions, version, registry);
  await pointLink(dir, 'current', version);
  const launcher = launcherIn(dir);
  const tmp = `${launcher}.${process.pid}.tmp`;
  await copyFile(LAUNCHER_SOURCE, tmp);
  await rename(tmp, launcher);
  return launcher;
}
