import { existsSync } from 'node:fs';
import { copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entryOf, folderProblem, point } from '../launcher/launcher.mjs';
import { installVersion } from './npm.js';
import { files, isVersion } from './state.js';

/** The launcher as this package ships it; `setup` copies it into the folder, where releases never touch it. */
export const LAUNCHER_SOURCE = fileURLToPath(new URL('../launcher/launcher.mjs', import.meta.url));
export const launcherIn = (dir: string) => join(dir, 'launcher.mjs');

/**
 * Points `current` or `previous` at versions/<v>, as the launcher does (its own code: one way to flip a
 * link): a new link renamed over the old on Unix; on Windows a junction, the old link removed first.
 */
export async function pointLink(
  dir: string,
  name: 'current' | 'previous',
  version: string,
  platform: NodeJS.Platform = process.platform,
): Promise<void> {
  if (!isVersion(version)) throw new Error(`"${version}" is not a version`);
  point(dir, name, version, platform);
}

/**
 * Makes the side-by-side folder for the version that runs now: installs it into versions/<v> with the npm
 * beside node (unless it is there), points `current` at it and copies the launcher in. Returns the
 * launcher's path. Throws, before installing anything, when another user could change the folder.
 */
export async function setup(dir: string, version: string, registry: string | undefined): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // The launcher refuses a folder another user could change (it runs what is in it): said now, not later.
  const unsafe = folderProblem(dir);
  if (unsafe) throw new Error(unsafe);
  // Installed already (this version came as an update, maybe with plugin releases listed beside it): kept as
  // it is. installVersion would install it again without them, stranding the plugins it came with.
  if (!existsSync(entryOf(join(files(dir).versions, version))))
    await installVersion(files(dir).versions, version, registry);
  await pointLink(dir, 'current', version);
  const launcher = launcherIn(dir);
  const tmp = `${launcher}.${process.pid}.tmp`;
  await copyFile(LAUNCHER_SOURCE, tmp);
  await rename(tmp, launcher);
  return launcher;
}
