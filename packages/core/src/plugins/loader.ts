import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsepodError } from '../errors.js';
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

const PLUGIN_NAME = /^(?:@usepod-agent\/plugin-|(?:@[^/]+\/)?usepod-agent-plugin-)(.+)$/;

interface Installed {
  name: string;
  /** The node_modules folder it was found in. */
  nodeModules: string;
  kinds: string[];
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
    let declared: unknown;
    try {
      declared = (
        JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, { kinds?: unknown }>
      )['usepod-agent']?.kinds;
    } catch {
      continue;
    }
    const kinds = Array.isArray(declared)
      ? declared.filter((k): k is string => typeof k === 'string')
      : [m[1]!];
    out.push({ name, nodeModules, kinds });
  }
  return out;
}

/** node_modules folders searched, in order: the given roots', then those this package resolves from. */
function searchPath(roots: string[]): string[] {
  const own = createRequire(import.meta.url).resolve.paths('usepod-agent-plugin-x') ?? [];
  return [...new Set([...roots.map((r) => join(r, 'node_modules')), ...own])];
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

export interface ResolveOptions {
  /** Folders whose node_modules are searched, in order (default: cwd, the CLI plugin root). */
  searchRoots?: string[];
  /** Options passed to a plugin factory. */
  options?: unknown;
}

/** Loads the plugin providing `kind`, or throws naming what it looked for. */
export async function loadPluginForKind(kind: string, opts: ResolveOptions = {}): Promise<AgentPlugin> {
  const roots = opts.searchRoots ?? [process.cwd(), cliPluginRoot()];
  const found = installedPlugins(roots).find((p) => p.kinds.includes(kind));
  if (found) {
    const entry = createRequire(join(found.nodeModules, 'noop.js')).resolve(found.name);
    const mod = await import(pathToFileURL(entry).href);
    return pluginFromModule(mod, found.name, opts.options);
  }
  throw new UsepodError(
    'USEPOD_PLUGIN_NOT_FOUND',
    `backend kind "${kind}" is not provided by any installed plugin (looked for ${candidatePackages(kind).join(', ')}); install one with \`usepod-agent plugins install <package>\``,
    { user: true },
  );
}
