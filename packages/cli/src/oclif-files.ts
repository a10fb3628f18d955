import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** oclif's folder name for this CLI (package.json `oclif.dirname`) and its environment prefix. */
const DIRNAME = 'usepod-agent';
const SCOPE = 'USEPOD_AGENT';
/** Larger than any theme or package.json: past it the file is not one (core's MAX_PACKAGE_JSON, not imported: see readSmall). */
const MAX = 1024 * 1024;

/**
 * A small regular file's text, 'missing', or why it is not one (a FIFO, a device, a folder, too big),
 * opened without blocking and checked on the open file. Core's readLocalTextSync does the same; this
 * runs in bin/run.js before any command, where loading core would cost every `--help` (decision 0008).
 */
function readSmall(path: string): { text: string } | 'missing' | { why: string } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Not there, or not ours to open: oclif says what it says about those, as before.
    return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES'
      ? 'missing'
      : { why: `cannot be opened (${code})` };
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) return { why: 'is a folder, not a file' };
    if (!st.isFile()) return { why: 'is not a regular file (a device, FIFO or socket)' };
    if (st.size > MAX) return { why: `is ${st.size} bytes, more than such a file ever holds (${MAX} bytes)` };
    const buf = Buffer.alloc(st.size);
    return { text: buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8') };
  } finally {
    closeSync(fd);
  }
}

/** oclif's `config.dir(category)`, before oclif runs (its Config computes the same). */
function oclifDir(env: NodeJS.ProcessEnv, category: 'config' | 'data'): string {
  const scoped = env[`${SCOPE}_${category.toUpperCase()}_DIR`];
  if (scoped) return scoped;
  const home = env.HOME || homedir();
  const base =
    env[`XDG_${category.toUpperCase()}_HOME`] ||
    (process.platform === 'win32' && env.LOCALAPPDATA) ||
    join(home, category === 'data' ? '.local/share' : '.config');
  return join(base, DIRNAME);
}

/**
 * The files oclif reads at every start, before any command (even `version`): `theme.json` in its config
 * folder, the plugin root's `package.json` and each user or linked plugin's `package.json` it names. oclif
 * reads them with a plain blocking read: a FIFO at any of them froze every command for good (`run` under
 * a service included), and /dev/zero was read whole. Checked here first, on the open file, without
 * blocking; returns one line naming the first that is no small regular file, or undefined.
 */
export function unreadableOclifFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const refused = (path: string): string | undefined => {
    const r = readSmall(path);
    return typeof r === 'object' && 'why' in r
      ? `${path} ${r.why}: the CLI reads it at every start`
      : undefined;
  };
  if (!env[`${SCOPE}_DISABLE_THEME`]) {
    const theme = refused(join(oclifDir(env, 'config'), 'theme.json'));
    if (theme) return theme;
  }
  const data = oclifDir(env, 'data');
  const root = join(data, 'package.json');
  const read = readSmall(root);
  if (read === 'missing') return undefined;
  if ('why' in read) return `${root} ${read.why}: the CLI reads it at every start`;
  let plugins: unknown;
  try {
    plugins = (JSON.parse(read.text) as { oclif?: { plugins?: unknown } }).oclif?.plugins;
  } catch {
    return undefined;
  }
  if (!Array.isArray(plugins)) return undefined;
  for (const p of plugins.slice(0, 200)) {
    if (!p || typeof p !== 'object') continue;
    const { name, type, root: linked } = p as { name?: unknown; type?: unknown; root?: unknown };
    const dir =
      type === 'link' && typeof linked === 'string'
        ? linked
        : type === 'user' && typeof name === 'string'
          ? join(data, 'node_modules', ...name.split('/'))
          : undefined;
    const bad = dir === undefined ? undefined : refused(join(dir, 'package.json'));
    if (bad) return bad;
  }
  return undefined;
}
