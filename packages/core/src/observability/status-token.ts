import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expandHome } from '../config/paths.js';
import { replaceFileSync } from '../local-file.js';

/**
 * The status server's token (issue 32): 32 random bytes, base64url, in a 0600 file beside the identity
 * key. The dashboard and its API always ask for it; `/status` and `/metrics` do when the server listens
 * beyond loopback. It is a secret: never logged, never shown on the page (only `usepod-agent dashboard`
 * prints the URL carrying it, to the operator).
 */
export const STATUS_TOKEN_FILE = 'status.token';

/** 32 bytes in base64url: 43 characters. A shorter file is not one of ours and is made again. */
const TOKEN = /^[A-Za-z0-9_-]{43,128}$/;
/** Larger than any token file: past it the file is not one (and is never read whole). */
const MAX_FILE = 1024;
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const NONBLOCK = constants.O_NONBLOCK ?? 0;

/** Where the token of the agent using `keyPath` lives: `observability.token_file`, else beside the key. */
export function statusTokenPath(keyPath: string, tokenFile?: string): string {
  return tokenFile ? expandHome(tokenFile) : join(dirname(expandHome(keyPath)), STATUS_TOKEN_FILE);
}

/** What a token file holds, read without blocking or reading more than MAX_FILE. */
export type TokenFileRead =
  | { kind: 'missing' }
  | { kind: 'token'; token: string }
  /** A small regular file that holds no token (empty, garbage, a truncated write). */
  | { kind: 'garbage' }
  /** Not a file to read or replace: a link (beside the key), a FIFO, a device, a folder, another user's, huge. */
  | { kind: 'unsafe'; why: string };

/**
 * Reads a token file as untrusted (issue 28's rule for files): a FIFO or device is never opened for a
 * blocking read (it froze the agent's start, or the event loop for a fleet row), a big file is never read
 * whole, and with `follow: false` a link is not followed (one planted beside the key must not choose the
 * file we read or mode we change). `fix` (the agent keeping its own token) refuses another user's file
 * and makes a token we read 0600 again.
 */
export function readTokenFile(path: string, o: { follow: boolean; fix?: boolean }): TokenFileRead {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | NONBLOCK | (o.follow ? 0 : NOFOLLOW));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'unsafe', why: 'it is a symbolic link' };
    return { kind: 'unsafe', why: `it cannot be read (${code ?? 'error'})` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: 'unsafe', why: 'it is not a regular file' };
    if (st.size > MAX_FILE) return { kind: 'unsafe', why: `it is ${st.size} bytes, not a token` };
    // The agent keeps only a file of its own user's; a reader (the CLI, maybe root) may read another's.
    const uid = process.getuid?.();
    if (o.fix && uid !== undefined && st.uid !== uid)
      return { kind: 'unsafe', why: `it belongs to user ${st.uid}, not this agent's` };
    const buf = Buffer.alloc(MAX_FILE + 1);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('utf8').trim();
    if (!TOKEN.test(text)) return { kind: 'garbage' };
    // On the open file, never by path: the file we read is the one made 0600.
    if (o.fix && process.platform !== 'win32' && (st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    return { kind: 'token', token: text };
  } finally {
    closeSync(fd);
  }
}

/** The token, or undefined when the file is missing or not a token. */
export function readStatusToken(keyPath: string, tokenFile?: string): string | undefined {
  const r = readTokenFile(statusTokenPath(keyPath, tokenFile), { follow: !!tokenFile });
  return r.kind === 'token' ? r.token : undefined;
}

/**
 * The token, made on first use (0600, the folder 0700 when made here). A file others could read is
 * made 0600 again: the token guards the owner's pause button. A `tokenFile` of the operator's is only
 * read (it may be a link: a mounted secret): one that holds no token throws, naming it. Beside the key,
 * a link, FIFO, folder or another user's file is refused (throws, naming it), never written through.
 */
export function ensureStatusToken(keyPath: string, tokenFile?: string): string {
  const path = statusTokenPath(keyPath, tokenFile);
  const have = readTokenFile(path, { follow: !!tokenFile, fix: !tokenFile });
  if (have.kind === 'token') return have.token;
  if (tokenFile) {
    const why = have.kind === 'unsafe' ? `: ${have.why}` : '';
    throw new Error(
      `observability.token_file ${path} holds no token (43 or more base64url characters)${why}`,
    );
  }
  if (have.kind === 'unsafe')
    throw new Error(`${path} is not a token file of this agent's: ${have.why}; remove it`);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  // A new file renamed over the old: no reader sees half a token, and a full disk leaves no stray copy.
  replaceFileSync(path, `${token}\n`);
  return token;
}

/** Compares in constant time: a timing side channel must not spell the token out. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * What a status proof signs before the page's nonce: an answer made for this and nothing else. A page
 * holding the token asks `/api/proof?nonce=...` before it sends the token anywhere: whatever holds the
 * port while the agent restarts (another local user's server) cannot make the answer without the token.
 */
export const STATUS_PROOF_CONTEXT = 'usepod-agent status proof v1\n';

/** A page's nonce: 16 to 32 random bytes, in lowercase hex. */
export function isStatusNonce(nonce: string): boolean {
  return /^[0-9a-f]{32,64}$/.test(nonce);
}

/** `hex(HMAC-SHA256(token, context + nonce))`, or undefined for a nonce that is not 32-64 lowercase hex. */
export function statusProof(token: string, nonce: string): string | undefined {
  if (!isStatusNonce(nonce)) return undefined;
  return createHmac('sha256', token)
    .update(STATUS_PROOF_CONTEXT + nonce)
    .digest('hex');
}
