import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsepodError } from '../errors.js';
import { type AgentPlugin, pluginFromModule } from './plugin.js';

/**
 * Maps a backend kind to the package that provides it: the first-party package
 * for built-in kinds, else `usepod-agent-plugin-<kind>` or
 * `@<scope>/usepod-agent-plugin-<kind>`, looked up from this package and from
 * the folder where `usepod-agent plugins install` puts plugins.
 */
const FIRST_PARTY: Record<string, string> = {
  vllm: '@usepod-agent/plugin-vllm',
  ollama: '@usepod-agent/plugin-ollama',
  llamacpp: '@usepod-agent/plugin-llamacpp',
  lmstudio: '@usepod-agent/plugin-lmstudio',
  openrouter: '@usepod-agent/plugin-openai-compatible',
  venice: '@usepod-agent/plugin-openai-compatible',
  openai: '@usepod-agent/plugin-openai-compatible',
};

/** Where oclif's plugin-plugins installs packages for the `usepod-agent` CLI. */
export function cliPluginRoot(): string {
  const data = process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share');
  return join(data, 'usepod-agent');
}

export function candidatePackages(kind: string, searchRoots: string[]): string[] {
  const names = FIRST_PARTY[kind] ? [FIRST_PARTY[kind]] : [];
  names.push(`usepod-agent-plugin-${kind}`);
  // Scoped third-party packages: look for @*/usepod-agent-plugin-<kind> in each root.
  for (const root of searchRoots) {
    const nm = join(root, 'node_modules');
    if (!existsSync(nm)) continue;
    for (const entry of readdirSync(nm)) {
      if (!entry.startsWith('@')) continue;
      if (existsSync(join(nm, entry, `usepod-agent-plugin-${kind}`)))
        names.push(`${entry}/usepod-agent-plugin-${kind}`);
    }
  }
  return [...new Set(names)];
}

export interface ResolveOptions {
  /** Folders whose node_modules are searched, in order (default: cwd, the CLI plugin root). */
  searchRoots?: string[];
  /** Options passed to a plugin factory. */
  options?: unknown;
}

function tryResolve(name: string, roots: string[]): string | undefined {
  const bases = [import.meta.url, ...roots.map((r) => pathToFileURL(join(r, 'noop.js')).href)];
  for (const base of bases) {
    try {
      return createRequire(base).resolve(name);
    } catch {
      // try the next base
    }
  }
  return undefined;
}

/** Loads the plugin providing `kind`, or throws naming every package it looked for. */
export async function loadPluginForKind(kind: string, opts: ResolveOptions = {}): Promise<AgentPlugin> {
  const roots = opts.searchRoots ?? [process.cwd(), cliPluginRoot()];
  const names = candidatePackages(kind, roots);
  for (const name of names) {
    const resolved = tryResolve(name, roots);
    if (!resolved) continue;
    const mod = await import(pathToFileURL(resolved).href);
    return pluginFromModule(mod, name, opts.options);
  }
  throw new UsepodError(
    'USEPOD_PLUGIN_NOT_FOUND',
    `backend kind "${kind}" is not provided by any installed plugin (looked for ${names.join(', ')}); install one with \`usepod-agent plugins install <package>\``,
    { user: true },
  );
}
