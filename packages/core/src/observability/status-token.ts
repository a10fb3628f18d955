import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expandHome } from '../config/paths.js';

/**
 * The status server's token (issue 32): 32 random bytes, base64url, in a 0600 file beside the identity
 * key. The dashboard and its API always ask for it; `/status` and `/metrics` do when the server listens
 * beyond loopback. It is a secret: never logged, never shown on the page (only `usepod-agent dashboard`
 * prints the URL carrying it, to the operator).
 */
export const STATUS_TOKEN_FILE = 'status.token';

/** 32 bytes in base64url: 43 characters. A shorter file is not one of ours and is made again. */
const TOKEN = /^[A-Za-z0-9_-]{43,128}$/;

/** Where the token of the agent using `keyPath` lives: `observability.token_file`, else beside the key. */
export function statusTokenPath(keyPath: string, tokenFile?: string): string {
  return tokenFile ? expandHome(tokenFile) : join(dirname(expandHome(keyPath)), STATUS_TOKEN_FILE);
}

/** The token, or undefined when the file is missing or not a token. */
export function readStatusToken(keyPath: string, tokenFile?: string): string | undefined {
  try {
    const text = readFileSync(statusTokenPath(keyPath, tokenFile), 'utf8').trim();
    return TOKEN.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The token, made on first use (0600, the folder 0700 when made here). A file others could read is
 * made 0600 again: the token guards the owner's pause button. A `tokenFile` of the operator's is only
 * read: one that holds no token throws, naming it.
 */
export function ensureStatusToken(keyPath: string, tokenFile?: string): string {
  const path = statusTokenPath(keyPath, tokenFile);
  const have = readStatusToken(keyPath, tokenFile);
  if (tokenFile) {
    if (!have)
      throw new Error(`observability.token_file ${path} holds no token (43 or more base64url characters)`);
    return have;
  }
  if (have) {
    if (process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return have;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  if (process.platform !== 'win32') chmodSync(path, 0o600);
  return token;
}

/** Compares in constant time: a timing side channel must not spell the token out. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
