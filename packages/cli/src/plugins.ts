import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '@oclif/core/interfaces';
import { type AgentPlugin, engineText, errorMessage, isUsepodError, readLocalText } from '@usepod-agent/core';
import { checkPlugin } from '@usepod-agent/core/backend';
import { importPlugin, writeFileAtomic } from '@usepod-agent/core/cli';
import { companionsBeside } from '@usepod-agent/plugin-update';
import { shareCore } from './shared-core.js';

/** Where `run` looks for backend plugins by kind: the cwd, then the folder `plugins install` writes to. */
export function pluginSearchRoots(config: Config): string[] {
  return [process.cwd(), config.dataDir];
}

export interface InstalledPlugin {
  name: string;
  version: string;
  /** `user` (plugins install) or `link` (plugins link). */
  type: string;
  root: string;
  plugin?: AgentPlugin;
  /** Why it is not a usable agent plugin, when it is not. */
  error?: string;
  /** The coded error behind `error`: a plugin built for another core is refused by `run` and `validate`. */
  refusal?: Error;
}

/** A package's plugin (its default export, or `plugin`), checked against this core's contract. */
export function pluginOfModule(mod: unknown, name: string): AgentPlugin {
  const m = mod as { default?: unknown; plugin?: unknown };
  return checkPlugin(m.default ?? m.plugin ?? m, name);
}

/**
 * Backend plugins installed or linked through `usepod-agent plugins`: oclif
 * knows their roots; each is imported by its own name from its root, so a
 * linked folder works as well as an installed package.
 */
export async function installedPlugins(config: Config): Promise<InstalledPlugin[]> {
  const out: InstalledPlugin[] = [];
  // An update installed a compatible release of an installed plugin with this version (docs/updates.md):
  // this version loads that one; the versions before keep the operator's copy.
  const along = companionsBeside(fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, ''));
  // By name: oclif fills its list in the order the plugins finished loading, which varies from one start
  // to the next, and when two plugins register one backend kind the first applied serves it.
  const added = [...config.plugins.values()]
    .filter((p) => p.type === 'user' || p.type === 'link')
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const p of added) {
    // Only now: the hook's loader thread costs ~40 ms at start, wasted when no plugin is installed.
    shareCore();
    const newer = p.type === 'user' ? along.get(p.name) : undefined;
    const item: InstalledPlugin = {
      name: p.name,
      version: newer?.version ?? p.version,
      type: p.type,
      root: newer?.root ?? p.root,
    };
    try {
      const entry = createRequire(join(item.root, 'package.json')).resolve(p.name);
      // Bounded, and what it throws folded into one line naming it: a plugin that never finished its
      // import held `plugins`, `run` and `validate` for good (or ended them with exit 13, silently).
      item.plugin = await importPlugin(entry, p.name);
    } catch (err) {
      item.error = engineText(errorMessage(err), 300);
      if (isUsepodError(err) && err.code === 'USEPOD_PLUGIN_API_MISMATCH') item.refusal = err;
    }
    out.push(item);
  }
  return out;
}

/**
 * The agent plugins among them, ready for createAgent({ plugins }); one built for another core is refused
 * here, in one line (exit 2), by `run` and `validate` alike. Packages that are oclif plugins only (commands,
 * no agent plugin) are left to oclif.
 */
export async function agentPlugins(config: Config): Promise<AgentPlugin[]> {
  const all = await installedPlugins(config);
  const refused = all.find((p) => p.refusal);
  if (refused?.refusal) throw refused.refusal;
  return all.flatMap((p) => (p.plugin ? [p.plugin] : []));
}

/**
 * `plugins install` runs npm in `dataDir`; npm 7+ would install each plugin's peer `@usepod-agent/core`
 * there, a second copy (19 MB) the agent never runs (shared-core.ts resolves it to the agent's own).
 * `legacy-peer-deps` in that folder's .npmrc leaves peers to the host, as peers are meant to be.
 */
export async function leavePeersToTheAgent(dataDir: string): Promise<string | undefined> {
  const file = join(dataDir, '.npmrc');
  // Read (and written) only as a small regular file: a FIFO there was waited on for good, by this read
  // and by npm after it. It is the plugin root's own, so one that is not a file is named (the line
  // returned), never replaced.
  const read = await readLocalText(file, 64 * 1024);
  if (read.kind === 'refused') return `${file} ${read.why}: npm reads its settings there`;
  const current = read.kind === 'text' ? read.text : '';
  if (/^\s*legacy-peer-deps\s*=\s*true\s*$/m.test(current)) return undefined;
  await mkdir(dataDir, { recursive: true });
  const sep = current === '' || current.endsWith('\n') ? '' : '\n';
  // 0600: an operator installing private plugins keeps a registry token here; npm reads it as the same user.
  await writeFileAtomic(file, `${current}${sep}legacy-peer-deps=true\n`, 0o600);
  return undefined;
}
