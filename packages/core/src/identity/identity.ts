import { type KeyObject, randomBytes } from 'node:crypto';
import { mkdir, realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { expandHome } from '../config/paths.js';
import { UsepodError } from '../errors.js';
import { readLocalText, replaceFile } from '../local-file.js';
import { redactor } from '../observability/redact.js';
import { privateKeyOf, publicKeyOf, signDetached, verifyDetached } from './ed25519.js';

/**
 * The agent's Ed25519 identity (PROTOCOL.md section 7), in the file format of
 * the 0.3.x agent so an operator keeps their provider identity across agents.
 */
const BEGIN = '-----BEGIN USEPOD AGENT KEY-----';
const END = '-----END USEPOD AGENT KEY-----';
const KNOWN_KEYS = new Set(['version', 'created', 'secret', 'public', 'provider_id']);
/** An identity file is about 400 bytes: past this it is not one, and it is not read whole. */
const MAX_IDENTITY_FILE = 64 * 1024;

export interface Identity {
  readonly path: string;
  /** Standard base64 of the 32-byte public key, as sent in `auth_response.pubkey`. */
  readonly publicKey: string;
  readonly created: string;
  providerId: string | undefined;
  /** Detached signature over raw bytes, standard base64. */
  sign(message: Uint8Array): string;
  /** Short, non-secret fingerprint for logs. */
  readonly fingerprint: string;
}

interface IdentityRecord {
  created: string;
  seed: Uint8Array;
  publicKey: Uint8Array;
  providerId: string | undefined;
  /** Unknown `key: value` lines, kept when the file is rewritten. */
  extra: [string, string][];
}

/** RFC 3339 with microseconds and an explicit offset, as the 0.3.x agent writes. */
function rfc3339Micros(d: Date): string {
  return d.toISOString().replace('Z', '000+00:00');
}

export function parseIdentity(text: string, path: string): IdentityRecord {
  const fail = (why: string) =>
    new UsepodError('USEPOD_IDENTITY_INVALID', `identity file ${path}: ${why}`, { user: true });
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const start = lines.indexOf(BEGIN);
  const end = lines.indexOf(END);
  if (start === -1 || end === -1 || end < start) throw fail(`missing the ${BEGIN} / ${END} markers`);
  const fields = new Map<string, string>();
  const extra: [string, string][] = [];
  for (const line of lines.slice(start + 1, end)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (KNOWN_KEYS.has(key)) fields.set(key, value);
    else extra.push([key, value]);
  }
  if (fields.get('version') !== '1')
    throw fail(`unsupported version ${JSON.stringify(fields.get('version'))} (expected 1)`);
  const seed = decodeKey(fields.get('secret'), 'secret', fail);
  const publicKey = decodeKey(fields.get('public'), 'public', fail);
  const derived = publicKeyOf(seed);
  if (!equalBytes(derived, publicKey)) {
    throw new UsepodError(
      'USEPOD_IDENTITY_MISMATCH',
      `identity file ${path}: the public key does not match the key derived from the secret; the file is refused`,
      { user: true },
    );
  }
  const providerId = fields.get('provider_id') || undefined;
  return { created: fields.get('created') ?? '', seed, publicKey, providerId, extra };
}

function decodeKey(value: string | undefined, name: string, fail: (why: string) => Error): Uint8Array {
  if (!value) throw fail(`missing "${name}"`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) throw fail(`"${name}" is not standard base64`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length !== 32) throw fail(`"${name}" must hold 32 bytes, found ${bytes.length}`);
  return new Uint8Array(bytes);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A value that could end its line: the file is line-based, so it would add lines of its own. */
const LINE_BREAK = /[\r\n\u2028\u2029\0]/;

export function serializeIdentity(rec: IdentityRecord): string {
  for (const [k, v] of [['created', rec.created], ['provider_id', rec.providerId ?? ''], ...rec.extra]) {
    if (LINE_BREAK.test(k!) || LINE_BREAK.test(v!)) {
      throw new UsepodError(
        'USEPOD_IDENTITY_INVALID',
        `identity field "${k}" holds a line break; not written`,
      );
    }
  }
  const lines = [
    BEGIN,
    'version: 1',
    `created: ${rec.created}`,
    `secret: ${Buffer.from(rec.seed).toString('base64')}`,
    `public: ${Buffer.from(rec.publicKey).toString('base64')}`,
  ];
  if (rec.providerId) lines.push(`provider_id: ${rec.providerId}`);
  for (const [k, v] of rec.extra) lines.push(`${k}: ${v}`);
  lines.push(END, '');
  return lines.join('\n');
}

/**
 * `replaceFile` (temp file, fsync, rename: a crash leaves the old file or the new one, never half of one;
 * no temp file left on failure, ENOSPC included) of the file a link at `pathLike` names: the owner's own
 * link (the key kept elsewhere) stays a link, and its target is replaced. The folder is made if missing.
 */
export async function writeFileAtomic(pathLike: string, contents: string, mode = 0o600): Promise<void> {
  const path = await realpath(pathLike).catch(() => pathLike);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await replaceFile(path, contents, mode);
}

class FileIdentity implements Identity {
  readonly path: string;
  readonly publicKey: string;
  readonly created: string;
  readonly fingerprint: string;
  readonly #rec: IdentityRecord;
  readonly #secretKey: KeyObject;

  constructor(path: string, rec: IdentityRecord) {
    this.path = path;
    this.#rec = rec;
    this.publicKey = Buffer.from(rec.publicKey).toString('base64');
    this.created = rec.created;
    this.#secretKey = privateKeyOf(rec.seed);
    this.fingerprint = fingerprintOf(rec.publicKey);
    redactor.add(Buffer.from(rec.seed).toString('base64'));
  }

  get providerId(): string | undefined {
    return this.#rec.providerId;
  }

  set providerId(id: string | undefined) {
    this.#rec.providerId = id;
  }

  sign(message: Uint8Array): string {
    return Buffer.from(signDetached(message, this.#secretKey)).toString('base64');
  }

  /** Writes the file with the current provider id. */
  async save(): Promise<void> {
    await writeFileAtomic(this.path, serializeIdentity(this.#rec));
  }
}

export function fingerprintOf(publicKey: Uint8Array): string {
  return `ed25519:${Buffer.from(publicKey).toString('hex').slice(0, 16)}`;
}

export interface LoadIdentityResult {
  identity: PersistedIdentity;
  created: boolean;
  /** Set when another local user could read the key or replace it (one line, with what to run). */
  permissionWarning?: string;
}

export interface PersistedIdentity extends Identity {
  save(): Promise<void>;
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Why another local user could read the key, or replace it with one whose secret they know (then the
 * operator's GPU serves jobs under their provider), or undefined. `st` is the file read (its open
 * descriptor's mode and owner, not a second look at the path); without it, only the folder is looked at
 * (a key just made). Root is trusted; so is this process's own
 * group on a folder: a Kubernetes volume is group-writable for the pod's fsGroup.
 */
async function exposure(path: string, st?: { mode: number; uid: number }): Promise<string | undefined> {
  const uid = process.getuid?.();
  if (uid === undefined) return undefined; // Windows: ACLs, not modes
  if (st && st.uid !== uid && st.uid !== 0) {
    return `identity file ${path} belongs to user ${st.uid}, not to this one (${uid}): that user can read and replace the key; run: chown ${uid} ${path}`;
  }
  // A link's folder and its target's: another user changing either one can swap the key.
  const real = await realpath(path).catch(() => path);
  for (const dir of new Set([dirname(path), dirname(real)])) {
    const d = await stat(dir).catch(() => undefined);
    if (!d || d.mode & 0o1000) continue; // sticky (/tmp): others cannot rename or remove our file
    const others = d.mode & 0o002 || (d.mode & 0o020 && d.gid !== process.getgid?.());
    if (others || (d.uid !== uid && d.uid !== 0)) {
      return `identity file ${path} is in a folder another user can change (${dir}, owner ${d.uid}, mode ${octal(d.mode)}): they could replace the key; keep it in a folder only this user can write, such as ~/.usepod-agent`;
    }
  }
  if (st && st.mode & 0o077) {
    return `identity file ${path} is readable by group or others (mode ${octal(st.mode & 0o777)}); run: chmod 600 ${path}`;
  }
  return undefined;
}

/** Reads the identity file, or creates it (mode 0600) when it does not exist. */
export async function loadOrCreateIdentity(pathLike: string): Promise<LoadIdentityResult> {
  const path = resolve(expandHome(pathLike));
  const read = await readLocalText(path, MAX_IDENTITY_FILE);
  if (read.kind === 'refused')
    throw new UsepodError('USEPOD_IDENTITY_IO', `identity file ${path} ${read.why}`, { user: true });
  if (read.kind === 'missing') {
    const identity = generateIdentity(path);
    try {
      await identity.save();
    } catch (e) {
      throw new UsepodError(
        'USEPOD_IDENTITY_IO',
        `cannot write identity file ${path}: ${(e as Error).message}`,
        {
          user: true,
          cause: e,
        },
      );
    }
    const warning = await exposure(path);
    return { identity, created: true, ...(warning ? { permissionWarning: warning } : {}) };
  }
  const identity = new FileIdentity(path, parseIdentity(read.text, path));
  const result: LoadIdentityResult = { identity, created: false };
  const warning = await exposure(path, read);
  if (warning) result.permissionWarning = warning;
  return result;
}

/** Reads an existing identity file without creating one. */
export async function readIdentity(pathLike: string): Promise<PersistedIdentity> {
  const path = resolve(expandHome(pathLike));
  const read = await readLocalText(path, MAX_IDENTITY_FILE);
  if (read.kind !== 'text') {
    const why =
      read.kind === 'missing' ? 'does not exist (it is created by `usepod-agent run` or `setup`)' : read.why;
    throw new UsepodError('USEPOD_IDENTITY_IO', `identity file ${path} ${why}`, { user: true });
  }
  return new FileIdentity(path, parseIdentity(read.text, path));
}

/** A fresh identity, not yet written. */
export function generateIdentity(path: string, seed: Uint8Array = randomBytes(32)): PersistedIdentity {
  return new FileIdentity(path, {
    created: rfc3339Micros(new Date()),
    seed,
    publicKey: publicKeyOf(seed),
    providerId: undefined,
    extra: [],
  });
}

/** Verifies a detached signature; used by the testkit coordinator. */
export function verifySignature(message: Uint8Array, signatureB64: string, publicKeyB64: string): boolean {
  const sig = Buffer.from(signatureB64, 'base64');
  const pub = Buffer.from(publicKeyB64, 'base64');
  if (sig.length !== 64 || pub.length !== 32) return false;
  return verifyDetached(message, new Uint8Array(sig), new Uint8Array(pub));
}
