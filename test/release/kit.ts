import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Registry, startRegistry } from '../registry.js';

/**
 * What the release tier's tests share (the rehearsal, the updates): a scratch folder with a verdaccio of
 * its own and an operator's home, the public packages, packing, and running a command to its end.
 */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The packages a release publishes, in the order they are published. */
export const PUBLIC = [
  'core',
  'testkit',
  'plugin-vllm',
  'plugin-ollama',
  'plugin-llamacpp',
  'plugin-lmstudio',
  'plugin-openai-compatible',
  'plugin-alerts',
  'plugin-ledger',
  'plugin-dashboard',
  'plugin-gpu',
  'plugin-control',
  'plugin-update',
  'cli',
];

export interface Ran {
  code: number;
  /** stdout, stderr and why it never ran, together. */
  out: string;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Ran> {
  return new Promise((resolve) =>
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({
          // A number is the exit code; a string (ENOENT) means it never ran.
          code: err ? (typeof err.code === 'number' ? err.code : 127) : 0,
          out: `${stdout}${stderr}${err && typeof err.code !== 'number' ? err.message : ''}`,
          stdout,
          stderr,
        }),
    ),
  );
}

export async function ok(r: Promise<Ran>, what: string): Promise<Ran> {
  const ran = await r;
  if (ran.code !== 0) throw new Error(`${what} failed (exit ${ran.code}):\n${ran.out.slice(-4000)}`);
  return ran;
}

/** `npm pack` of one public package into `dest`; the tarball's path. */
export async function pack(pkg: string, dest: string, env: NodeJS.ProcessEnv): Promise<string> {
  const r = await ok(
    sh('npm', ['pack', '--json', '--pack-destination', dest], { cwd: join(ROOT, 'packages', pkg), env }),
    `npm pack ${pkg}`,
  );
  const [{ filename }] = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as [{ filename: string }];
  return join(dest, filename);
}

export interface Scratch {
  work: string;
  reg: Registry;
  /** The operator's home: HOME and XDG folders of its own. */
  home: string;
  /** The operator's environment: the registry's npm settings, that home, and `extra`. */
  operatorEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Stops the registry and removes the folder (USEPOD_KEEP_REHEARSAL=1 leaves it to look at). */
  close(): Promise<void>;
}

/** A scratch folder under the system's tmp with a verdaccio of its own and an empty home. */
export async function scratch(prefix: string): Promise<Scratch> {
  const work = await mkdtemp(join(tmpdir(), prefix));
  const reg = await startRegistry(work);
  const home = join(work, 'home');
  await mkdir(home, { recursive: true });
  return {
    work,
    reg,
    home,
    operatorEnv: (extra = {}) => ({
      ...reg.npmEnv,
      HOME: home,
      XDG_DATA_HOME: join(home, 'data'),
      XDG_CONFIG_HOME: join(home, 'config'),
      XDG_CACHE_HOME: join(home, 'cache'),
      ...extra,
    }),
    close: async () => {
      reg.close();
      if (!process.env.USEPOD_KEEP_REHEARSAL) await rm(work, { recursive: true, force: true });
    },
  };
}
