import { execFileSync } from 'node:child_process';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nacl from 'tweetnacl';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isUsepodError } from '../errors.js';
import {
  generateIdentity,
  loadOrCreateIdentity,
  parseIdentity,
  readIdentity,
  verifySignature,
  writeFileAtomic,
} from './identity.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-id-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file as the 0.3.x agent writes it: microsecond timestamp with offset, provider id, and a key we do not know. */
function rustAgentFile(seed: Uint8Array, extra = ''): string {
  const pub = Buffer.from(nacl.sign.keyPair.fromSeed(seed).publicKey).toString('base64');
  return [
    '-----BEGIN USEPOD AGENT KEY-----',
    'version: 1',
    'created: 2026-05-02T10:11:12.123456+00:00',
    `secret: ${Buffer.from(seed).toString('base64')}`,
    `public: ${pub}`,
    'provider_id: prov_123',
    extra,
    '-----END USEPOD AGENT KEY-----',
    '',
  ].join('\n');
}

describe('identity file (PROTOCOL.md section 7)', () => {
  it('creates a new key on first run with mode 0600', async () => {
    const path = join(dir, 'sub', 'identity.key');
    const { identity, created } = await loadOrCreateIdentity(path);
    expect(created).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const text = await readFile(path, 'utf8');
    expect(text).toMatch(
      /^-----BEGIN USEPOD AGENT KEY-----\nversion: 1\ncreated: \d{4}-\d\d-\d\dT[\d:.]+\+00:00\nsecret: /,
    );
    expect(text).toContain(`public: ${identity.publicKey}`);
    expect(text).not.toContain('provider_id');
    expect(Buffer.from(identity.publicKey, 'base64')).toHaveLength(32);
    const again = await loadOrCreateIdentity(path);
    expect(again.created).toBe(false);
    expect(again.identity.publicKey).toBe(identity.publicKey);
  });

  it('loads a file written by the 0.3.x agent unchanged, ignoring unknown lines', async () => {
    const seed = nacl.randomBytes(32);
    const path = join(dir, 'identity.key');
    await writeFile(path, rustAgentFile(seed, 'hostname: rig-01'), { mode: 0o600 });
    const id = await readIdentity(path);
    expect(id.providerId).toBe('prov_123');
    expect(id.created).toBe('2026-05-02T10:11:12.123456+00:00');
    expect(id.publicKey).toBe(Buffer.from(nacl.sign.keyPair.fromSeed(seed).publicKey).toString('base64'));
    // Signing with the loaded key verifies against the file's public key.
    const msg = Buffer.from('nonce bytes');
    expect(verifySignature(msg, id.sign(msg), id.publicKey)).toBe(true);
    // Rewriting keeps the unknown line.
    id.providerId = 'prov_456';
    await id.save();
    const text = await readFile(path, 'utf8');
    expect(text).toContain('provider_id: prov_456');
    expect(text).toContain('hostname: rig-01');
  });

  it('refuses a file whose public key does not match its secret, and says so', async () => {
    const seed = nacl.randomBytes(32);
    const other = Buffer.from(nacl.sign.keyPair.fromSeed(nacl.randomBytes(32)).publicKey).toString('base64');
    const text = rustAgentFile(seed).replace(/public: .*/, `public: ${other}`);
    const path = join(dir, 'identity.key');
    await writeFile(path, text);
    const err = await readIdentity(path).catch((e: unknown) => e);
    expect(isUsepodError(err, 'USEPOD_IDENTITY_MISMATCH')).toBe(true);
    expect((err as Error).message).toMatch(/public key does not match/);
    expect((err as Error).message).not.toContain(Buffer.from(seed).toString('base64'));
  });

  it('refuses other versions, missing markers and bad base64', () => {
    const seed = nacl.randomBytes(32);
    expect(() => parseIdentity(rustAgentFile(seed).replace('version: 1', 'version: 2'), 'f')).toThrow(
      /unsupported version/,
    );
    expect(() => parseIdentity('secret: x', 'f')).toThrow(/markers/);
    expect(() => parseIdentity(rustAgentFile(seed).replace(/secret: .*/, 'secret: !!!'), 'f')).toThrow(
      /base64/,
    );
    expect(() => parseIdentity(rustAgentFile(seed).replace(/secret: .*/, 'secret: AAAA'), 'f')).toThrow(
      /32 bytes/,
    );
  });

  it('warns when the file is readable by group or others', async () => {
    const path = join(dir, 'identity.key');
    await writeFile(path, rustAgentFile(nacl.randomBytes(32)));
    await chmod(path, 0o644);
    const { permissionWarning } = await loadOrCreateIdentity(path);
    expect(permissionWarning).toMatch(/readable by group or others.*chmod 600/);
  });

  it('warns when another user could replace the key: its folder, a link into such a folder, a folder or file of theirs', async () => {
    const warned = async (path: string) => (await loadOrCreateIdentity(path)).permissionWarning;
    const open = join(dir, 'open');
    await mkdir(open);
    await chmod(open, 0o757);
    // Made there, and found there: whoever can write the folder can rename their own key over it.
    expect(await warned(join(open, 'identity.key'))).toBe(
      `identity file ${join(open, 'identity.key')} is in a folder another user can change (${open}, owner ${process.getuid?.()}, mode 0757): they could replace the key; keep it in a folder only this user can write, such as ~/.usepod-agent`,
    );
    expect(await warned(join(open, 'identity.key'))).toMatch(/in a folder another user can change/);
    const own = join(dir, 'own');
    await mkdir(own, { mode: 0o700 });
    await symlink(join(open, 'identity.key'), join(own, 'identity.key'));
    expect(await warned(join(own, 'identity.key'))).toContain(`(${open}, owner`);
    // A sticky folder (/tmp): others may add files, never rename or remove ours.
    const sticky = join(dir, 'sticky');
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    expect(await warned(join(sticky, 'identity.key'))).toBeUndefined();
    // Group-writable for this process's own group (a Kubernetes volume's fsGroup): no one else's.
    const mine = join(dir, 'group');
    await mkdir(mine);
    await chmod(mine, 0o770);
    expect(await warned(join(mine, 'identity.key'))).toBeUndefined();
    if (process.getuid?.() !== 0) return;
    await chown(mine, 0, 65534);
    expect(await warned(join(mine, 'identity.key'))).toMatch(/in a folder another user can change/);
    const key = join(dir, 'theirs.key');
    await writeFile(key, rustAgentFile(nacl.randomBytes(32)), { mode: 0o600 });
    await chown(key, 65534, 65534);
    expect(await warned(key)).toBe(
      `identity file ${key} belongs to user 65534, not to this one (0): that user can read and replace the key; run: chown 0 ${key}`,
    );
    const theirs = join(dir, 'theirs');
    await mkdir(theirs, { mode: 0o700 });
    await chown(theirs, 65534, 65534);
    expect(await warned(join(theirs, 'identity.key'))).toContain(`(${theirs}, owner 65534, mode 0700)`);
  });

  it('writes atomically: no temp file is left, and a failed rename keeps the old file', async () => {
    const path = join(dir, 'identity.key');
    const id = generateIdentity(path);
    await id.save();
    const before = await readFile(path, 'utf8');
    expect(await readdir(dir)).toEqual(['identity.key']);
    // The target is a directory: rename fails; the temp file is removed and nothing else changes.
    const blocked = join(dir, 'blocked');
    await writeFileAtomic(join(blocked, 'x'), 'x');
    await expect(writeFileAtomic(blocked, 'new contents')).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['blocked', 'identity.key']);
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it('leaves no temp file when the disk refuses the write itself (a file size limit stands in for ENOSPC)', async () => {
    const source = fileURLToPath(new URL('./identity.ts', import.meta.url));
    const script = `import { writeFileAtomic } from ${JSON.stringify(source)};
      await writeFileAtomic(process.argv[1], 'x'.repeat(64 * 1024)).then(() => console.log('written'), (e) => console.log(e.code));`;
    const out = execFileSync(
      'bash',
      [
        '-c',
        'ulimit -f 8; exec "$0" --import tsx --input-type=module -e "$1" "$2"',
        process.execPath,
        script,
        join(dir, 'identity.key'),
      ],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('EFBIG');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses to write a field holding a line break (the file is line-based)', async () => {
    const id = generateIdentity(join(dir, 'identity.key'));
    id.providerId = 'prov\nsecret: AAAA';
    await expect(id.save()).rejects.toThrow(/line break/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('signs the decoded nonce bytes, not their base64 text', () => {
    const id = generateIdentity(join(dir, 'k'));
    const nonce = nacl.randomBytes(32);
    const b64 = Buffer.from(nonce).toString('base64');
    const sig = id.sign(nonce);
    expect(Buffer.from(sig, 'base64')).toHaveLength(64);
    expect(verifySignature(nonce, sig, id.publicKey)).toBe(true);
    expect(verifySignature(Buffer.from(b64), sig, id.publicKey)).toBe(false);
  });
});

describe('Ed25519 through node:crypto', () => {
  it('derives the same public key and makes the same signatures as tweetnacl (RFC 8032 is deterministic)', () => {
    for (let i = 0; i < 20; i++) {
      const seed = nacl.randomBytes(32);
      const id = generateIdentity('/nowhere', seed);
      const kp = nacl.sign.keyPair.fromSeed(seed);
      expect(id.publicKey).toBe(Buffer.from(kp.publicKey).toString('base64'));
      const message = nacl.randomBytes(48);
      expect(id.sign(message)).toBe(
        Buffer.from(nacl.sign.detached(message, kp.secretKey)).toString('base64'),
      );
      expect(verifySignature(message, id.sign(message), id.publicKey)).toBe(true);
      expect(verifySignature(nacl.randomBytes(48), id.sign(message), id.publicKey)).toBe(false);
    }
  });

  // RFC 8032 section 7.1, TEST 1-3: fixed bytes, so a change of library or of the seed's wrapping that
  // agreed with itself (and with tweetnacl's random rounds above) would still be caught.
  it.each([
    {
      seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
      pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
      msg: '',
      sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    },
    {
      seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
      pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
      msg: '72',
      sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    },
    {
      seed: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
      pub: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
      msg: 'af82',
      sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
    },
  ])('matches RFC 8032 test vector with public key $pub', ({ seed, pub, msg, sig }) => {
    const id = generateIdentity('/nowhere', Buffer.from(seed, 'hex'));
    expect(Buffer.from(id.publicKey, 'base64').toString('hex')).toBe(pub);
    expect(Buffer.from(id.sign(Buffer.from(msg, 'hex')), 'base64').toString('hex')).toBe(sig);
    expect(
      verifySignature(Buffer.from(msg, 'hex'), Buffer.from(sig, 'hex').toString('base64'), id.publicKey),
    ).toBe(true);
    // tweetnacl, the library 0.3.x-era keys were checked against, agrees byte for byte.
    const kp = nacl.sign.keyPair.fromSeed(Buffer.from(seed, 'hex'));
    expect(Buffer.from(nacl.sign.detached(Buffer.from(msg, 'hex'), kp.secretKey)).toString('hex')).toBe(sig);
  });
});
