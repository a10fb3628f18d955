import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

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

/** The plugin root's package.json and the folder of each user or linked plugin it lists (at most 200). */
function listedPlugins(data: string, text: string): string[] {
  let plugins: unknown;
  try {
    plugins = (JSON.parse(text) as { oclif?: { plugins?: unknown } }).oclif?.plugins;
  } catch {
    return [];
  }
  if (!Array.isArray(plugins)) return [];
  const dirs: string[] = [];
  for (const p of plugins.slice(0, 200)) {
    if (!p || typeof p !== 'object') continue;
    const { name, type, root: linked } = p as { name?: unknown; type?: unknown; root?: unknown };
    if (type === 'link' && typeof linked === 'string') dirs.push(linked);
    else if (type === 'user' && typeof name === 'string')
      dirs.push(join(data, 'node_modules', ...name.split('/')));
  }
  return dirs;
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
  for (const dir of listedPlugins(data, read.text)) {
    const bad = refused(join(dir, 'package.json'));
    if (bad) return bad;
  }
  return undefined;
}

/**
 * Why another local user could change `path`, or undefined: it is not this user's or root's, or others
 * may write it (a folder with the sticky bit excepted). Group write counts only for a group other than
 * this user's own: under a private group per user (umask 002) a folder is group-writable by default.
 */
function othersCanChange(path: string, uid: number, gid: number): string | undefined {
  let st: ReturnType<typeof statSync>;
  try {
    // Through a link (a data folder moved to another disk): what is read is what it leads to.
    st = statSync(path);
  } catch {
    return undefined;
  }
  const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
  if (st.uid !== uid && st.uid !== 0)
    return `${path} belongs to uid ${st.uid}, not to this user (uid ${uid})`;
  if (sticky) return undefined;
  if (st.mode & 0o002 || (st.mode & 0o020 && st.gid !== gid))
    return `${path} can be changed by other users (mode ${(st.mode & 0o777).toString(8)})`;
  return undefined;
}

/**
 * The plugin root, as another local user could have made it: oclif loads every plugin its package.json
 * lists (their hooks and commands) at every start, and `run` imports them into the agent. So the root,
 * its parent, its package.json, its node_modules and each listed plugin's folder and package.json must
 * be this user's (or root's) and not writable by others; returns one line naming the first that is not.
 */
export function unsafePluginRoot(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  if (uid === undefined || gid === undefined) return undefined;
  const data = oclifDir(env, 'data');
  const root = join(data, 'package.json');
  const read = readSmall(root);
  // Nothing installed: nothing is loaded from there.
  if (read === 'missing' || 'why' in read) return undefined;
  const paths = [dirname(data), data, root, join(data, 'node_modules')];
  for (const dir of listedPlugins(data, read.text)) paths.push(dir, join(dir, 'package.json'));
  for (const path of paths) {
    const why = othersCanChange(path, uid, gid);
    if (why) return why;
  }
  return undefined;
}
