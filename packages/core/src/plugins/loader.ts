import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsepodError } from '../errors.js';
import { readLocalTextSync } from '../local-file.js';
import { bounded, PLUGIN_LOAD_MS, threwIn } from './bounded.js';
import { type AgentPlugin, pluginFromModule } from './plugin.js';

/**
 * Finds the plugin that provides a backend kind, knowing no engine by name: every installed package named
 * like a plugin (`@usepod-agent/plugin-*`, `usepod-agent-plugin-*`, `@<scope>/usepod-agent-plugin-*`) says
 * which kinds it provides in its package.json (`"usepod-agent": { "kinds": [...] }`; without it, the name's
 * suffix). Looked up in the given folders' node_modules, then where this package itself resolves from.
 */

/** Where oclif's plugin-plugins installs packages for the `usepod-agent` CLI. */
export function cliPluginRoot(): string {
  const data = process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share');
  return join(data, 'usepod-agent');
}

/**
 * Larger than any package.json: past it the file is not one (and is never read whole). The one bound for
 * every package.json read as untrusted (a plugin's, a linked folder's, the CLI's plugin manifest).
 */
export const MAX_PACKAGE_JSON = 1024 * 1024;

const PLUGIN_NAME = /^(?:@usepod-agent\/plugin-|(?:@[^/]+\/)?usepod-agent-plugin-)(.+)$/;

export interface Installed {
  name: string;
  /** The node_modules folder it was found in. */
  nodeModules: string;
  kinds: string[];
  /** Top-level config sections it claims (`"usepod-agent": { "sections": [...] }`). */
  sections: string[];
  /** Applied whenever installed, with or without its section (`"usepod-agent": { "default": true }`). */
  byDefault: boolean;
}

/** The plugin-named packages in one node_modules folder, with the kinds each declares. */
function pluginsIn(nodeModules: string): Installed[] {
  if (!existsSync(nodeModules)) return [];
  const names: string[] = [];
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('@')) {
      let scoped: string[] = [];
      try {
        scoped = readdirSync(join(nodeModules, entry));
      } catch {
        continue;
      }
      for (const sub of scoped) names.push(`${entry}/${sub}`);
    } else {
      names.push(entry);
    }
  }
  const out: Installed[] = [];
  for (const name of names) {
    const m = PLUGIN_NAME.exec(name);
    if (!m) continue;
    const dir = join(nodeModules, name);
    let declared: { kinds?: unknown; sections?: unknown; default?: unknown } | undefined;
    // Read as untrusted (a regular file, bounded, opened without blocking): a FIFO there froze run and
    // validate for good. One not read, like one not parsed, is no plugin.
    const pkg = readLocalTextSync(join(dir, 'package.json'), MAX_PACKAGE_JSON);
    if (pkg.kind !== 'text') continue;
    try {
      declared = (JSON.parse(pkg.text) as Record<string, typeof declared>)['usepod-agent'];
    } catch {
      continue;
    }
    const strings = (v: unknown) =>
      Array.isArray(v) ? v.filter((k): k is string => typeof k === 'string') : [];
    // Without a declaration, the name's suffix is the kind (the first plugins declared nothing).
    const kinds = Array.isArray(declared?.kinds) ? strings(declared.kinds) : declared ? [] : [m[1]!];
    out.push({
      name,
      nodeModules,
      kinds,
      sections: strings(declared?.sections),
      byDefault: declared?.default === true,
    });
  }
  return out;
}

/**
 * node_modules folders searched, in order: the given roots', then those this package resolves from.
 * One another user could have made or changed (`/tmp/node_modules` when the CLI runs in /tmp) is skipped:
 * a plugin applied by default would run its code in the agent.
 */
function searchPath(roots: string[]): string[] {
  const own = createRequire(import.meta.url).resolve.paths('usepod-agent-plugin-x') ?? [];
  return [...new Set([...roots.map((r) => join(r, 'node_modules')), ...own])].filter(
    (nm) => !othersCouldPlant(nm),
  );
}

/** Owned by another user than this one or root, writable by group or others, or in such a folder. */
function othersCouldPlant(nodeModules: string): boolean {
  const uid = process.getuid?.();
  if (uid === undefined) return false;
  try {
    const nm = statSync(nodeModules);
    const parent = statSync(dirname(nodeModules));
    return (
      (nm.uid !== uid && nm.uid !== 0) ||
      (nm.mode & 0o022) !== 0 ||
      ((parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0)
    );
  } catch {
    // Not there: nothing to plant from.
    return false;
  }
}

/** Every installed plugin package, first found first (a package found again further up is skipped). */
export function installedPlugins(roots: string[]): Installed[] {
  const seen = new Set<string>();
  const out: Installed[] = [];
  for (const nm of searchPath(roots)) {
    for (const p of pluginsIn(nm)) {
      if (seen.has(p.name)) continue;
      seen.add(p.name);
      out.push(p);
    }
  }
  return out;
}

/** The package names a kind could come from, for the error that says none was found. */
export function candidatePackages(kind: string): string[] {
  return [
    `usepod-agent-plugin-${kind}`,
    `@<scope>/usepod-agent-plugin-${kind}`,
    `a plugin declaring "${kind}" in its package.json`,
  ];
}

/**
 * Imports the plugin package `name` from its entry file and checks it: its import bounded by `ms`, and what
 * it throws said in one line naming it (USEPOD_PLUGIN_LOAD_FAILED); one that is no plugin is
 * USEPOD_PLUGIN_INVALID, one built for another contract USEPOD_PLUGIN_API_MISMATCH.
 */
export async function importPlugin(
  entry: string,
  name: string,
  options?: unknown,
  ms = PLUGIN_LOAD_MS,
): Promise<AgentPlugin> {
  const href = pathToFileURL(entry).href;
  // Once per module and process: the CLI lists every plugin before the agent looks one up by kind, and a
  // module that never finishes is waited for once, not once per look-up.
  let mod = imports.get(href);
  if (!mod) {
    mod = bounded(() => import(href), name, 'its import', ms);
    imports.set(href, mod);
  }
  return pluginFromModule(await mod, name, options);
}

/** Each plugin module's import as it went (Node keeps the module itself; this keeps its bound's answer). */
const imports = new Map<string, Promise<unknown>>();

/** Imports an installed plugin package from where it was found. */
export async function importInstalled(
  found: Installed,
  options?: unknown,
  ms?: number,
): Promise<AgentPlugin> {
  let entry: string;
  try {
    entry = createRequire(join(found.nodeModules, 'noop.js')).resolve(found.name);
  } catch (err) {
    throw threwIn(err, found.name, 'its resolution');
  }
  return importPlugin(entry, found.name, options, ms);
}

/**
 * Loads the plugin providing `kind` from the packages found (`installedPlugins`, read once per load), or
 * throws naming what it looked for.
 */
export async function loadPluginForKind(
  kind: string,
  installed: readonly Installed[],
  options?: unknown,
  ms?: number,
): Promise<AgentPlugin> {
  const found = installed.find((p) => p.kinds.includes(kind));
  if (found) return importInstalled(found, options, ms);
  throw new UsepodError(
    'USEPOD_PLUGIN_NOT_FOUND',
    `backend kind "${kind}" is not provided by any installed plugin (looked for ${candidatePackages(kind).join(', ')}); install one with \`usepod-agent plugins install <package>\``,
    { user: true },
  );
}

/** The project's own feature packages, named when a config uses their section and none is installed. */
const FIRST_PARTY_SECTIONS: Record<string, string> = {
  ledger: '@usepod-agent/plugin-ledger',
  yield: '@usepod-agent/plugin-gpu',
  energy: '@usepod-agent/plugin-gpu',
  control: '@usepod-agent/plugin-control',
  alerts: '@usepod-agent/plugin-alerts',
  update: '@usepod-agent/plugin-update',
  dashboard: '@usepod-agent/plugin-dashboard',
};

/** The installed package claiming a config section, if any. */
export function findPluginForSection(
  section: string,
  installed: readonly Installed[],
): Installed | undefined {
  return installed.find((p) => p.sections.includes(section));
}

/** The error for a section no installed plugin claims: one line naming the package to install. */
export function unclaimedSection(section: string, source: string | undefined, where?: string): UsepodError {
  const pkg = FIRST_PARTY_SECTIONS[section] ?? `usepod-agent-plugin-${section}`;
  return new UsepodError(
    'USEPOD_PLUGIN_NOT_FOUND',
    `${where ?? source ?? 'the config'}: [${section}] is not claimed by any installed plugin; install ${pkg} (\`usepod-agent plugins install ${pkg}\`), or remove the section`,
    { user: true },
  );
}

/** Installed packages that apply whether or not their section is set (the ledger, the control socket). */
export function defaultPlugins(installed: readonly Installed[]): Installed[] {
  return installed.filter((p) => p.byDefault);
}
