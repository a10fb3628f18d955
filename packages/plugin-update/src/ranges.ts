import { homedir } from 'node:os';
import { join } from 'node:path';
import { MAX_PACKAGE_JSON, readLocalText } from '@usepod-agent/core';
import satisfies from 'semver/functions/satisfies.js';
import validRange from 'semver/ranges/valid.js';
import { isVersion } from './state.js';

/** Where `usepod-agent plugins install` and `plugins link` record the operator's plugins (oclif's data dir). */
export function operatorPluginRoot(): string {
  const data = process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share');
  return join(data, 'usepod-agent');
}

export interface OperatorPlugin {
  name: string;
  /** The core versions it declares it works with (peerDependencies, or `"usepod-agent": { "core" }`). */
  range: string | undefined;
  /** Its installed release (package.json `version`), when it says one. */
  version?: string | undefined;
  /** `plugins link`ed: the operator's own folder, never replaced by a release from the registry. */
  linked?: boolean;
}

/**
 * A package.json, read as untrusted (a linked plugin is any folder of the operator's): a FIFO there was
 * waited on for good, holding the update check, and /dev/zero was read whole before its size was checked.
 */
async function json(path: string): Promise<Record<string, unknown> | undefined> {
  const read = await readLocalText(path, MAX_PACKAGE_JSON);
  if (read.kind !== 'text') return undefined;
  try {
    const v = JSON.parse(read.text) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The core range a plugin's package.json declares. */
export function declaredRange(pkg: Record<string, unknown>): string | undefined {
  const peers = pkg.peerDependencies as Record<string, unknown> | undefined;
  const own = pkg['usepod-agent'] as Record<string, unknown> | undefined;
  const r = peers?.['@usepod-agent/core'] ?? own?.core;
  return typeof r === 'string' ? r.slice(0, 200) : undefined;
}

/** The plugins the operator installed or linked, each with its declared core range. */
export async function operatorPlugins(root: string = operatorPluginRoot()): Promise<OperatorPlugin[]> {
  const manifest = await json(join(root, 'package.json'));
  const list = (manifest?.oclif as { plugins?: unknown } | undefined)?.plugins;
  if (!Array.isArray(list)) return [];
  const out: OperatorPlugin[] = [];
  for (const p of list.slice(0, 200)) {
    if (!p || typeof p !== 'object') continue;
    const { name, type, root: linked } = p as { name?: unknown; type?: unknown; root?: unknown };
    if (typeof name !== 'string' || name.length > 214) continue;
    const dir =
      type === 'link' && typeof linked === 'string' ? linked : join(root, 'node_modules', ...name.split('/'));
    const pkg = await json(join(dir, 'package.json'));
    const version = typeof pkg?.version === 'string' && isVersion(pkg.version) ? pkg.version : undefined;
    out.push({ name, range: pkg ? declaredRange(pkg) : undefined, version, linked: type === 'link' });
  }
  return out;
}

/**
 * The first plugin whose declared range excludes `version`, in one line, or undefined. A plugin named in
 * `coming` has a compatible release that comes along with the version (companions.ts): it strands nothing.
 */
export function stranded(
  plugins: readonly OperatorPlugin[],
  version: string,
  coming: readonly { name: string }[] = [],
): string | undefined {
  for (const p of plugins) {
    if (p.range === undefined || coming.some((c) => c.name === p.name)) continue;
    const ok = validRange(p.range) !== null && satisfies(version, p.range, { includePrerelease: true });
    if (!ok) return `plugin ${p.name} requires @usepod-agent/core ${p.range}`;
  }
  return undefined;
}
