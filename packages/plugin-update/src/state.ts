import { mkdir, readlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { engineText, readLocalText, replaceFile } from '@usepod-agent/core';
import valid from 'semver/functions/valid.js';
import { z } from 'zod';

/**
 * The side-by-side folder (docs/updates.md):
 *   versions/<v>/      one `npm install --prefix` each
 *   current, previous  links to versions/<v> (the launcher runs `current`)
 *   launcher.json      the launcher's: the version on trial, the bad ones (read here, never written)
 *   switch.json        a request to the launcher: switch to this version at the agent's exit
 *   health.json        the version on trial's proof of health, for the launcher
 *   update-state.json  this plugin's: the last check, what is pending, what was said
 * Every file is small, written atomically (a new file renamed over the old one: never through a link),
 * 0600, and checked when read: a file on disk is untrusted.
 */
/** A version's shape, bounded: three numbers of up to six digits and a prerelease of safe characters. */
const VERSION_SHAPE = /^\d{1,6}\.\d{1,6}\.\d{1,6}(?:-[0-9A-Za-z.-]{1,64})?$/;
/**
 * A release's version: of that shape, and strict semver by semver's own reading. A registry or a file may
 * say `01.2.3` or `1.2.3-01`: semver's functions throw on those, so they are no version here.
 */
export const isVersion = (v: string): boolean => VERSION_SHAPE.test(v) && valid(v) === v;
export const versionString = z.string().refine(isVersion, 'not a version');
const version = versionString;
const MAX_FILE = 64 * 1024;
// Read back into logs, `status` and doctor: folded (controls, bidi marks) as any text from outside.
const text = z
  .string()
  .max(600)
  .transform((t) => engineText(t, 600));
const iso = z.string().max(40);

export const files = (dir: string) => ({
  versions: join(dir, 'versions'),
  current: join(dir, 'current'),
  previous: join(dir, 'previous'),
  launcher: join(dir, 'launcher.json'),
  switch: join(dir, 'switch.json'),
  health: join(dir, 'health.json'),
  state: join(dir, 'update-state.json'),
});

/** The folder: the launcher's (it tells its agent), else `[update] dir`, else `update/` beside the key. */
export function updateDir(keyPath: string, configured: string | undefined): string {
  const fromLauncher = process.env.USEPOD_UPDATE_DIR;
  if (fromLauncher) return resolve(fromLauncher);
  return resolve(configured ?? join(dirname(keyPath), 'update'));
}

export const launcherState = z.object({
  trial: z
    .object({ version, previous: version.nullable(), timeoutMs: z.number() })
    .loose()
    .nullable()
    .catch(null),
  bad: z
    .array(z.object({ version, reason: text, at: iso }).loose())
    .max(200)
    .catch([]),
});
export type LauncherState = z.output<typeof launcherState>;

export const updateState = z.object({
  checkedAt: iso.optional().catch(undefined),
  /** The newest release of the channel at the last check. */
  latest: z.object({ version, publishedAt: iso }).optional().catch(undefined),
  /** Plugins' compatible releases that come along with the latest (companions.ts). */
  plugins: z
    .array(z.object({ name: z.string().max(214), from: version.optional(), version }))
    .max(200)
    .optional()
    .catch(undefined),
  /** Installed and waiting for its moment, or waiting for its spread/window. */
  pending: z.object({ version, at: iso, installed: z.boolean() }).optional().catch(undefined),
  /** Why the latest is held back (a plugin's core range), as said once. */
  held: z.object({ version, why: text }).optional().catch(undefined),
  /** Versions whose roll-back the owner was told of (update_failed sent). */
  notified: z.array(version).max(200).catch([]),
  /** The version whose availability was said (notify mode), so it is said once. */
  announced: version.optional().catch(undefined),
  error: text.optional().catch(undefined),
});
export type UpdateState = z.output<typeof updateState>;

export const healthReport = z.object({
  version,
  pid: z.number(),
  authenticated: z.boolean(),
  refused: text.optional(),
  advertised: z.array(z.string().max(300)).max(1000),
  selftests: z.record(z.string().max(300), z.enum(['pass', 'fail'])),
});
export type HealthReport = z.output<typeof healthReport>;

/**
 * A small JSON file checked by `schema`; absent, not a regular file, too big, not JSON or not of the
 * shape: `fallback`. Opened without blocking and checked on the open file: a FIFO in its place would hold
 * the read (and the agent's start) for good.
 */
export async function readChecked<T>(path: string, schema: z.ZodType<T>, fallback: T): Promise<T> {
  // Bounded before it is read: a planted giant file costs nothing.
  const read = await readLocalText(path, MAX_FILE);
  if (read.kind !== 'text') return fallback;
  try {
    const r = schema.safeParse(JSON.parse(read.text));
    return r.success ? r.data : fallback;
  } catch {
    return fallback;
  }
}

export const readLauncher = (dir: string) =>
  readChecked(files(dir).launcher, launcherState, { trial: null, bad: [] });
export const readUpdateState = (dir: string) =>
  readChecked(files(dir).state, updateState, { notified: [] } as UpdateState);

/**
 * `value` as JSON, written as core's `replaceFile` writes (a fresh file, never through a link, 0600,
 * synced, renamed over `path`; no temp file left on failure: on a full disk every check would otherwise
 * leave one more), into the folder made if it is not there yet.
 */
export async function writeAtomic(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await replaceFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** The version a link (`current`, `previous`) points at, when it names one. */
export async function linkedVersion(path: string): Promise<string | undefined> {
  try {
    const v = basename(await readlink(path));
    return isVersion(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
