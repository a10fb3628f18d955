import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';

/**
 * Where the running agent was installed from, so `upgrade` updates that copy and not whichever `npm -g`
 * happens to be first on PATH (nvm, a `~/.npm-global` prefix, a project's node_modules).
 */
export type InstallLocation =
  /** `npm install -g`: `<prefix>/lib/node_modules/<name>` (Windows: `<prefix>/node_modules/<name>`). */
  | { kind: 'global'; prefix: string }
  /** A dependency of a project: `<project>/node_modules/<name>`. */
  | { kind: 'project'; project: string }
  /** Fetched by npx into its cache: the next `npx <name>@latest` fetches the new version itself. */
  | { kind: 'npx' }
  /** A git checkout or an unpacked folder: npm does not own it. */
  | { kind: 'checkout'; root: string };

export function installLocation(
  cliRoot: string,
  platform: NodeJS.Platform = process.platform,
): InstallLocation {
  const root = realpathOr(cliRoot);
  const parts = root.split(sep);
  if (parts.includes('_npx')) return { kind: 'npx' };
  // A scoped name sits one folder deeper: node_modules/@scope/name.
  let modules = dirname(root);
  if (basename(modules).startsWith('@')) modules = dirname(modules);
  if (basename(modules) !== 'node_modules') return { kind: 'checkout', root };
  const holder = dirname(modules);
  if (existsSync(join(holder, 'package.json'))) return { kind: 'project', project: holder };
  if (platform !== 'win32' && basename(holder) === 'lib') return { kind: 'global', prefix: dirname(holder) };
  return { kind: 'global', prefix: holder };
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The npm that belongs to the running node (nvm and friends put it beside node), else the one on PATH. */
export function npmBeside(nodePath: string, platform: NodeJS.Platform = process.platform): string {
  const name = platform === 'win32' ? 'npm.cmd' : 'npm';
  const beside = join(dirname(nodePath), name);
  return existsSync(beside) ? beside : name;
}
