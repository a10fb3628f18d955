import { basename, dirname, join } from 'node:path';
import { MAX_PACKAGE_JSON, readBoundedText, readLocalTextSync } from '@usepod-agent/core';
import gt from 'semver/functions/gt.js';
import prerelease from 'semver/functions/prerelease.js';
import satisfies from 'semver/functions/satisfies.js';
import valid from 'semver/functions/valid.js';
import validRange from 'semver/ranges/valid.js';
import { z } from 'zod';
import { declaredRange, type OperatorPlugin } from './ranges.js';
import { isVersion, versionString } from './state.js';

/**
 * A plugin's compatible release, installed with a new version into its side-by-side folder (docs/updates.md,
 * "Plugins"): the agent on that version loads it; the previous version keeps the operator's copy.
 */
export interface Companion {
  name: string;
  /** The release the operator has (the one the new version would strand). */
  from?: string | undefined;
  /** The release that comes along. */
  version: string;
}

/** An npm package name (lowercase, optional scope): checked before it reaches a URL, an npm command or a log. */
export const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]{0,100}\/)?[a-z0-9][a-z0-9._~-]{0,100}$/;

const MAX_PACKUMENT = 8 * 1024 * 1024;
const MAX_VERSIONS = 5000;

/** The parts of a registry's packument read here; the rest is ignored, every field is checked. */
export const packumentSchema = z.object({
  name: z.string().max(214),
  'dist-tags': z.record(z.string().max(64), z.string().max(100)).catch({}),
  versions: z.record(z.string().max(100), z.record(z.string(), z.unknown())),
});
export type Packument = z.output<typeof packumentSchema>;

/**
 * The highest release of a plugin whose declared core range includes `core`, or undefined. The rule
 * (docs/updates.md): a valid version, newer than the one installed, not deprecated, no higher than the
 * plugin's own dist-tag named like the channel (else its `latest`: an untagged release is not ready), and
 * no prerelease on the `latest` channel.
 */
export function pickCompanion(
  p: Packument,
  o: { core: string; channel: string; installed: string | undefined },
): string | undefined {
  const tags = p['dist-tags'];
  const cap = [tags[o.channel], tags.latest].find((t) => t !== undefined && isVersion(t));
  let best: string | undefined;
  for (const [v, manifest] of Object.entries(p.versions).slice(0, MAX_VERSIONS)) {
    if (!isVersion(v)) continue;
    if (manifest.version !== v || typeof manifest.deprecated === 'string') continue;
    if (o.channel === 'latest' && prerelease(v)) continue;
    if (cap && gt(v, cap)) continue;
    if (o.installed && valid(o.installed) && !gt(v, o.installed)) continue;
    const range = declaredRange(manifest);
    if (range === undefined || validRange(range) === null) continue;
    if (!satisfies(o.core, range, { includePrerelease: true })) continue;
    if (!best || gt(v, best)) best = v;
  }
  return best;
}

/** The registry npm would ask: the configured one, else npm's own (`npm config get registry`). */
export function packumentUrl(registry: string, name: string): string {
  const base = registry.endsWith('/') ? registry : `${registry}/`;
  return new URL(name.replace('/', '%2f'), base).href;
}

/**
 * A plugin's packument from the registry: bounded (8 MB, 30 s), JSON, of the checked shape, for that name.
 * Throws saying why not; `stop` (the agent stopping) ends the ask at once.
 */
export async function fetchPackument(
  registry: string,
  name: string,
  timeoutMs = 30_000,
  stop?: AbortSignal,
): Promise<Packument> {
  if (!PACKAGE_NAME.test(name)) throw new Error('not an npm package name');
  const timeout = AbortSignal.timeout(timeoutMs);
  const deadline = stop ? AbortSignal.any([timeout, stop]) : timeout;
  const res = await fetch(packumentUrl(registry, name), {
    headers: { accept: 'application/json' },
    redirect: 'error',
    signal: deadline,
  });
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`the registry answered HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length'));
  if (declared > MAX_PACKUMENT) {
    await res.body.cancel().catch(() => {});
    throw new Error('its packument is too big');
  }
  // Bounded in time by the same deadline (fetch alone may lose it mid-body: readBoundedText).
  const text = await readBoundedText(res, MAX_PACKUMENT, deadline).catch((err: unknown) => {
    const e = err as Error;
    throw new Error(
      e.name === 'TimeoutError'
        ? 'its packument did not arrive in time'
        : e instanceof RangeError
          ? 'its packument is too big'
          : `its packument could not be read (${e.message})`,
    );
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error('its packument is not JSON');
  }
  const parsed = packumentSchema.safeParse(json);
  if (!parsed.success || parsed.data.name !== name) throw new Error('its packument is not one');
  return parsed.data;
}

export interface PluginPlan {
  /** Releases to install with the new version. */
  companions: Companion[];
  /** Why some plugin is still stranded (one line, what `stranded` says), for the operator. */
  lookups: string[];
}

/**
 * For each plugin the new version would strand: its compatible release, when the registry has one. A
 * linked plugin is the operator's own folder and is never replaced; a failed look-up finds nothing (the
 * update is then held back as before), and says why in `lookups`.
 */
export async function planCompanions(
  plugins: readonly OperatorPlugin[],
  core: string,
  o: {
    channel: string;
    registry: () => Promise<string>;
    packument?: typeof fetchPackument;
    /** The agent stopping: no more look-ups (a registry that hangs held its stop 30 s per plugin). */
    signal?: AbortSignal | undefined;
  },
): Promise<PluginPlan> {
  const out: PluginPlan = { companions: [], lookups: [] };
  const excluded = plugins.filter(
    (p) =>
      p.range !== undefined &&
      !(validRange(p.range) !== null && satisfies(core, p.range, { includePrerelease: true })),
  );
  for (const p of excluded) {
    if (o.signal?.aborted) break;
    if (p.linked || !PACKAGE_NAME.test(p.name)) continue;
    try {
      const doc = await (o.packument ?? fetchPackument)(await o.registry(), p.name, undefined, o.signal);
      const version = pickCompanion(doc, { core, channel: o.channel, installed: p.version });
      if (version) out.companions.push({ name: p.name, from: p.version, version });
    } catch (err) {
      out.lookups.push(`${p.name}: ${(err as Error).message}`.replace(/[^\x20-\x7e]/g, '').slice(0, 200));
    }
  }
  return out;
}

/** The file in a version's folder that lists the releases installed with it (the CLI loads those). */
export const COMPANIONS_FILE = 'usepod-plugins.json';

const companionsFile = z.record(z.string().regex(PACKAGE_NAME), versionString);

/**
 * The plugin releases installed beside the CLI whose package root is `cliRoot` (an update's companions),
 * by name, each with its folder; none outside a version folder, or when the file is absent or garbled.
 */
export function companionsBeside(cliRoot: string): Map<string, { version: string; root: string }> {
  const found = new Map<string, { version: string; root: string }>();
  const nodeModules = dirname(cliRoot);
  if (basename(nodeModules) !== 'node_modules') return found;
  const file = join(dirname(nodeModules), COMPANIONS_FILE);
  // Every CLI command reads these, synchronously: a FIFO among them (its size 0 passed the old check)
  // froze each command for good, so each is read as untrusted (regular, bounded, opened without blocking).
  const list = readLocalTextSync(file, 64 * 1024);
  if (list.kind !== 'text') return found;
  try {
    const listed = companionsFile.safeParse(JSON.parse(list.text));
    if (!listed.success) return found;
    for (const [name, version] of Object.entries(listed.data).slice(0, 200)) {
      const root = join(nodeModules, ...name.split('/'));
      const pkg = readLocalTextSync(join(root, 'package.json'), MAX_PACKAGE_JSON);
      if (pkg.kind !== 'text') continue;
      try {
        if ((JSON.parse(pkg.text) as { version?: unknown }).version === version)
          found.set(name, { version, root });
      } catch {}
    }
  } catch {}
  return found;
}
