import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  type Stats,
  writeFileSync,
} from 'node:fs';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const NONBLOCK = constants.O_NONBLOCK ?? 0;
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export interface LocalTextOptions {
  /** Refuse a symbolic link in its place (a file of the agent's own that another user could swap). */
  noLink?: boolean;
  /** Refuse a file that belongs to another user than this process's (Unix). */
  ownUser?: boolean;
}

/** What reading a small local file gave: its text, nothing there, or why it was not read. */
export type LocalText =
  /** `mode` and `uid` are the open file's: those of what was read, whatever is at the path by now. */
  | { kind: 'text'; text: string; mode: number; uid: number }
  | { kind: 'missing' }
  /** There, but not read: `why` is a clause for a one-line message ("is not a regular file (a FIFO)"). */
  | { kind: 'refused'; why: string; code?: string | undefined };

function refusedOpen(e: NodeJS.ErrnoException, o: LocalTextOptions): LocalText {
  if (e.code === 'ENOENT') return { kind: 'missing' };
  if (e.code === 'ELOOP' && o.noLink) return { kind: 'refused', why: 'is a symbolic link', code: e.code };
  return { kind: 'refused', why: `cannot be opened (${e.code ?? e.message})`, code: e.code };
}

/** Why the open file is not read (a folder, a FIFO or device, another user's, too big), or undefined. */
function refusal(st: Stats, max: number, o: LocalTextOptions): LocalText | undefined {
  if (st.isDirectory()) return { kind: 'refused', why: 'is a folder, not a file' };
  if (!st.isFile()) return { kind: 'refused', why: 'is not a regular file (a device, FIFO or socket)' };
  const uid = process.getuid?.();
  if (o.ownUser && uid !== undefined && st.uid !== uid)
    return { kind: 'refused', why: `belongs to user ${st.uid}, not to this one (${uid})` };
  if (st.size > max) {
    const size = st.size >= 1048576 ? `${(st.size / 1048576).toFixed(1)} MB` : `${st.size} bytes`;
    return { kind: 'refused', why: `is ${size}, more than such a file ever holds (${max} bytes)` };
  }
  return undefined;
}

function failedRead(e: NodeJS.ErrnoException): LocalText {
  return { kind: 'refused', why: `cannot be read (${e.code ?? e.message})`, code: e.code };
}

/** The text read, unless the file held more than its size said when it was opened. */
function textOf(buf: Buffer, got: number, st: Stats): LocalText {
  if (got > st.size) return { kind: 'refused', why: 'grew while it was read' };
  return { kind: 'text', text: buf.subarray(0, got).toString('utf8'), mode: st.mode, uid: st.uid };
}

/**
 * Reads a small file that should be a regular one (a config, an identity) as untrusted: opened without
 * blocking and checked on the open file, so a FIFO in its place is never waited on (it froze the start
 * for good) and a device or a huge file is never read whole (/dev/zero grew a string to V8's limit).
 */
export async function readLocalText(path: string, max: number, o: LocalTextOptions = {}): Promise<LocalText> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | NONBLOCK | (o.noLink ? NOFOLLOW : 0));
  } catch (err) {
    return refusedOpen(err as NodeJS.ErrnoException, o);
  }
  try {
    const st = await fh.stat();
    const refused = refusal(st, max, o);
    if (refused) return refused;
    // In as many reads as the file system needs (one may return less than asked), and one byte more
    // than its size: a file that grew since (still being written) is not taken half-read.
    const buf = Buffer.alloc(st.size + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return textOf(buf, got, st);
  } catch (err) {
    return failedRead(err as NodeJS.ErrnoException);
  } finally {
    await fh.close();
  }
}

/**
 * `readLocalText` for the few reads that must stay synchronous (a lock taken while the agent starts, a
 * plugin's package.json found while node_modules is walked): the same checks, on the open file.
 */
export function readLocalTextSync(path: string, max: number, o: LocalTextOptions = {}): LocalText {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | NONBLOCK | (o.noLink ? NOFOLLOW : 0));
  } catch (err) {
    return refusedOpen(err as NodeJS.ErrnoException, o);
  }
  try {
    const st = fstatSync(fd);
    const refused = refusal(st, max, o);
    if (refused) return refused;
    const buf = Buffer.alloc(st.size + 1);
    let got = 0;
    while (got < buf.length) {
      const bytesRead = readSync(fd, buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return textOf(buf, got, st);
  } catch (err) {
    return failedRead(err as NodeJS.ErrnoException);
  } finally {
    closeSync(fd);
  }
}

/** A fresh name beside `path` for its next contents (hidden, this process's, random: never one planted). */
function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

// O_EXCL: a name planted in the folder (a link, a file) fails the open instead of being written through.
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW;

/**
 * Writes `text` as `path`: into a fresh file beside it (O_EXCL, never through a link, `mode` exactly,
 * whatever the umask), whole and synced, then renamed over `path`, so no reader sees half of it and a
 * link planted at `path` is replaced, never followed (a folder there fails). The folder is synced after,
 * best effort, so the rename outlives a power cut. A failure at any step (a full disk) leaves no temp file:
 * a writer retrying on a full disk would otherwise leave one more each time.
 */
export async function replaceFile(path: string, text: string, mode = 0o600): Promise<void> {
  const tmp = tempBeside(path);
  const fh = await open(tmp, CREATE, mode);
  try {
    try {
      await fh.chmod(mode);
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  // Best effort: not every OS opens or syncs a folder.
  const dir = await open(dirname(path), constants.O_RDONLY).catch(() => undefined);
  try {
    await dir?.sync().catch(() => {});
  } finally {
    await dir?.close().catch(() => {});
  }
}

/**
 * `replaceFile` for the few writers that must stay synchronous (the status token, made while the agent
 * starts; the dashboard's redirect page): the same steps and guarantees.
 */
export function replaceFileSync(path: string, text: string, mode = 0o600): void {
  const tmp = tempBeside(path);
  const fd = openSync(tmp, CREATE, mode);
  try {
    try {
      fchmodSync(fd, mode);
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  let dir: number | undefined;
  try {
    dir = openSync(dirname(path), constants.O_RDONLY);
    fsyncSync(dir);
  } catch {
    // Best effort: not every OS opens or syncs a folder.
  } finally {
    if (dir !== undefined) closeSync(dir);
  }
}
