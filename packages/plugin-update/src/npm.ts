import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { childEnv, killGroup, readLocalText } from '@usepod-agent/core';
import { z } from 'zod';
import { COMPANIONS_FILE, type Companion, PACKAGE_NAME } from './companions.js';
import { npmInvocation } from './npm-command.js';
import { isVersion, versionString } from './state.js';

/** The CLI package every version folder holds. */
export const CLI_PACKAGE = 'usepod-agent';

/** The npm that belongs to the running node (nvm and friends put it beside node), else the one on PATH. */
export function npmBeside(nodePath: string = process.execPath): string {
  const name = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const beside = join(dirname(nodePath), name);
  return existsSync(beside) ? beside : name;
}

/** The most of npm's stdout and of its stderr kept (a packument view can be a few megabytes). */
const MAX_OUTPUT = 16 * 1024 * 1024;

/**
 * Runs npm, bounded in time and output. On Unix npm leads a process group of its own, and at the deadline
 * the whole group is killed: an install script that hangs (a native build) would outlive npm otherwise,
 * one more at every retry, and hold npm's output open so that npm's end is never seen. Exported for its
 * test.
 */
export function run(
  args: string[],
  o: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<{ code: number; stdout: string; stderr: string }> {
  let npm: ReturnType<typeof npmInvocation>;
  try {
    // Windows: npm's script run by node itself, not npm.cmd through a shell (npm-command.ts).
    npm = npmInvocation(args);
  } catch (err) {
    return Promise.resolve({ code: 127, stdout: '', stderr: `error: ${(err as Error).message}` });
  }
  return new Promise((resolve) => {
    const out = { stdout: '', stderr: '' };
    const child = spawn(npm.file, npm.args, {
      // Unix: npm leads a process group of its own (spawn's `detached`; execFile has none), killed whole.
      detached: process.platform !== 'win32',
      windowsHide: true,
      windowsVerbatimArguments: npm.verbatim,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Not the agent's secrets: npm runs the install scripts of every package it installs.
      env: childEnv({ npm_config_update_notifier: 'false' }),
    });
    for (const name of ['stdout', 'stderr'] as const) {
      child[name].setEncoding('utf8');
      child[name].on('data', (d: string) => {
        // Bounded: what is past the bound is not read into memory.
        if (out[name].length < MAX_OUTPUT) out[name] += d.slice(0, MAX_OUTPUT - out[name].length);
      });
    }
    let why = '';
    const end = (reason: string) => {
      why ||= `\nnpm error ${reason}`;
      killGroup(child);
    };
    const deadline = setTimeout(
      () => end(`timed out after ${Math.round(o.timeoutMs / 1000)} s`),
      o.timeoutMs,
    );
    // The agent stopping: npm's group would otherwise go on in the background, out of the terminal's reach.
    const stop = () => end('stopped: the agent is stopping');
    if (o.signal?.aborted) stop();
    else o.signal?.addEventListener('abort', stop, { once: true });
    child.once('error', (err) => {
      why = `\nerror: ${err.message}`;
    });
    // 'close': npm and whatever held its output are gone. Last in stderr: what npmWhy says when npm gave
    // no error code of its own.
    child.once('close', (code) => {
      clearTimeout(deadline);
      o.signal?.removeEventListener('abort', stop);
      const failed = why !== '' || code !== 0;
      resolve({
        code: failed ? (typeof code === 'number' && code > 0 ? code : 127) : 0,
        stdout: out.stdout,
        stderr: out.stderr + why,
      });
    });
  });
}

/**
 * Why npm failed, in one bounded line: its error code and first line that says something (`E404: 404 Not
 * Found - GET …`), else the last error line. Never the log file's path npm ends with: it names a new file
 * every run, so the same failure would read as a new one each time (the updater says a failure once).
 */
export function npmWhy(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/[^\x20-\x7e]/g, '').trim())
    .filter((l) => /err/i.test(l) && l.length > 10 && !/complete log of this run/i.test(l));
  const body = (l: string) => l.replace(/^npm (?:error|ERR!)\s*/, '');
  const code = lines.map((l) => /^npm (?:error|ERR!) code (\S+)$/.exec(l)?.[1]).find(Boolean);
  const first = lines.find((l) => !/^npm (?:error|ERR!) (?:code|syscall|errno|path|dest)\b/.test(l));
  const why = code && first ? `${code}: ${body(first)}` : (lines.at(-1) ?? lines[0] ?? 'no output');
  return why.slice(0, 300);
}

const viewed = z.object({
  version: versionString,
  time: z.record(z.string(), z.string()),
});

export interface Release {
  version: string;
  /** When it was published (ms since the epoch). */
  publishedAt: number;
}

/**
 * The channel's release: `npm view usepod-agent@<tag> version time --json`. Throws saying why not; `signal`
 * (the agent stopping) ends npm at once.
 */
export async function viewRelease(
  channel: string,
  registry: string | undefined,
  signal?: AbortSignal,
): Promise<Release> {
  const r = await run(
    [
      'view',
      `${CLI_PACKAGE}@${channel}`,
      'version',
      'time',
      '--json',
      ...(registry ? ['--registry', registry] : []),
    ],
    { timeoutMs: 120_000, signal },
  );
  if (r.code !== 0) throw new Error(`npm view ${CLI_PACKAGE}@${channel} failed: ${npmWhy(r.stderr)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`npm view ${CLI_PACKAGE}@${channel} printed no JSON`);
  }
  // Several versions matched (a range, not a tag): the last is the newest.
  const one = Array.isArray(parsed) ? parsed.at(-1) : parsed;
  const v = viewed.safeParse(one);
  if (!v.success) throw new Error(`npm view ${CLI_PACKAGE}@${channel} gave no version and time`);
  // A time to come is no publish time (the registry's say): read as now, so the minimum age still runs
  // and no date past the calendar's end (+275760) is ever made from it.
  const at = Date.parse(v.data.time[v.data.version] ?? '');
  return {
    version: v.data.version,
    publishedAt: Number.isFinite(at) ? Math.min(at, Date.now()) : Date.now(),
  };
}

/** The registry npm asks: the configured one, else npm's own config's. Throws saying why not. */
export async function npmRegistry(configured: string | undefined, signal?: AbortSignal): Promise<string> {
  if (configured) return configured;
  const r = await run(['config', 'get', 'registry'], { timeoutMs: 30_000, signal });
  const url = r.stdout.trim();
  if (r.code !== 0 || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol))
    throw new Error(`npm config get registry gave no registry: ${npmWhy(r.stderr)}`);
  return url;
}

/** The CLI's entry in a version folder: what the launcher starts. */
export const entryOf = (versionDir: string) => join(versionDir, 'node_modules', CLI_PACKAGE, 'bin', 'run.js');

/**
 * Installs `usepod-agent@<version>` into versions/<version> with the npm beside node: into a fresh folder
 * first, renamed into place once complete, so the launcher never sees half an install. `companions` are
 * plugin releases installed with it (listed in the folder's usepod-plugins.json: that version loads them).
 */
export async function installVersion(
  versionsDir: string,
  version: string,
  registry: string | undefined,
  companions: readonly Companion[] = [],
  signal?: AbortSignal,
): Promise<string> {
  if (!isVersion(version)) throw new Error(`"${version}" is not a version`);
  for (const c of companions)
    if (!PACKAGE_NAME.test(c.name) || !isVersion(c.version))
      throw new Error(`"${c.name}@${c.version}" is not a plugin release`);
  const target = join(versionsDir, version);
  const listed =
    companions.length > 0
      ? JSON.stringify(Object.fromEntries(companions.map((c) => [c.name, c.version])))
      : undefined;
  if (
    existsSync(entryOf(target)) &&
    (await readLocalText(join(target, COMPANIONS_FILE), 64 * 1024).then((r) =>
      r.kind === 'text' ? r.text.trim() : undefined,
    )) === listed
  )
    return target;
  await mkdir(versionsDir, { recursive: true, mode: 0o700 });
  const partial = join(versionsDir, `.partial-${version}-${process.pid}`);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { mode: 0o700 });
  try {
    const r = await run(
      [
        'install',
        '--prefix',
        partial,
        '--no-audit',
        '--no-fund',
        '--omit=dev',
        ...(registry ? ['--registry', registry] : []),
        `${CLI_PACKAGE}@${version}`,
        ...companions.map((c) => `${c.name}@${c.version}`),
      ],
      { timeoutMs: 15 * 60_000, signal },
    );
    if (r.code !== 0 || !existsSync(entryOf(partial))) {
      const what = [`${CLI_PACKAGE}@${version}`, ...companions.map((c) => `${c.name}@${c.version}`)];
      throw new Error(`npm install ${what.join(' ')} failed: ${npmWhy(r.stderr)}`);
    }
    if (listed) await writeFile(join(partial, COMPANIONS_FILE), `${listed}\n`, { mode: 0o600 });
    await rm(target, { recursive: true, force: true });
    await rename(partial, target);
  } catch (err) {
    // Whatever failed (npm, or a full disk under the list or the rename), the half install goes now, not
    // at the next start's prune: it holds the space whose lack may be why.
    await rm(partial, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
  return target;
}
