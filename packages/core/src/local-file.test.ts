import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalText, replaceFile, replaceFileSync } from './local-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-local-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readLocalText', () => {
  it('reads a small regular file; says missing for nothing there', async () => {
    await writeFile(join(dir, 'a.json'), '{"a":1}', { mode: 0o640 });
    // With the mode and owner of the file read (its open descriptor's), for checks that must not look twice.
    expect(await readLocalText(join(dir, 'a.json'), 100)).toEqual({
      kind: 'text',
      text: '{"a":1}',
      mode: (await stat(join(dir, 'a.json'))).mode,
      uid: (await stat(join(dir, 'a.json'))).uid,
    });
    await writeFile(join(dir, 'empty'), '');
    expect(await readLocalText(join(dir, 'empty'), 100)).toMatchObject({ kind: 'text', text: '' });
    expect(await readLocalText(join(dir, 'none'), 100)).toEqual({ kind: 'missing' });
  });

  it.skipIf(process.platform === 'win32')(
    'never waits on a FIFO, never reads a device or a file over its bound, and refuses a folder',
    async () => {
      const fifo = join(dir, 'fifo');
      // Nobody writes into it: a blocking open or read would wait for good (the test times out).
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      expect(await readLocalText(fifo, 100)).toMatchObject({ kind: 'refused', why: /not a regular file/ });
      expect(await readLocalText('/dev/zero', 100)).toMatchObject({ kind: 'refused' });
      expect(await readLocalText(dir, 100)).toMatchObject({
        kind: 'refused',
        why: 'is a folder, not a file',
      });
      await writeFile(join(dir, 'big'), 'x'.repeat(101));
      expect(await readLocalText(join(dir, 'big'), 100)).toMatchObject({
        kind: 'refused',
        why: 'is 101 bytes, more than such a file ever holds (100 bytes)',
      });
    },
  );

  it.skipIf(process.platform === 'win32')('with noLink refuses a symbolic link in its place', async () => {
    await writeFile(join(dir, 'target'), 'secret');
    await symlink(join(dir, 'target'), join(dir, 'link'));
    expect(await readLocalText(join(dir, 'link'), 100)).toMatchObject({ kind: 'text', text: 'secret' });
    expect(await readLocalText(join(dir, 'link'), 100, { noLink: true })).toMatchObject({
      kind: 'refused',
      why: 'is a symbolic link',
    });
  });
});

/** The async writer and the sync one, tried alike: they promise the same. */
const writers = [
  { name: 'replaceFile', write: replaceFile },
  { name: 'replaceFileSync', write: async (p: string, t: string, m?: number) => replaceFileSync(p, t, m) },
];

describe.each(writers)('$name', ({ write }) => {
  it.skipIf(process.platform === 'win32')(
    'replaces a link planted at the path instead of writing through it, 0600, no temp file left',
    async () => {
      const sub = await mkdtemp(join(dir, 'replace-'));
      await writeFile(join(sub, 'victim'), 'theirs');
      await symlink(join(sub, 'victim'), join(sub, 'page.html'));
      await write(join(sub, 'page.html'), 'ours');
      expect(await readFile(join(sub, 'victim'), 'utf8')).toBe('theirs');
      const st = await lstat(join(sub, 'page.html'));
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      expect(await readFile(join(sub, 'page.html'), 'utf8')).toBe('ours');
      expect((await readdir(sub)).sort()).toEqual(['page.html', 'victim']);
    },
  );

  it.skipIf(process.platform === 'win32')(
    'gives the file exactly the mode asked, whatever the umask',
    async () => {
      const sub = await mkdtemp(join(dir, 'mode-'));
      const umask = process.umask(0o077);
      try {
        await write(join(sub, 'config.toml'), 'a = 1\n', 0o644);
      } finally {
        process.umask(umask);
      }
      expect((await stat(join(sub, 'config.toml'))).mode & 0o777).toBe(0o644);
      await write(join(sub, 'config.toml'), 'a = 2\n');
      expect((await stat(join(sub, 'config.toml'))).mode & 0o777).toBe(0o600);
      expect(await readFile(join(sub, 'config.toml'), 'utf8')).toBe('a = 2\n');
    },
  );

  it('a folder in its place: fails, and leaves the folder and no temp file', async () => {
    const sub = await mkdtemp(join(dir, 'folder-'));
    await mkdir(join(sub, 'pause.json'));
    await expect(write(join(sub, 'pause.json'), '{}')).rejects.toThrow();
    expect((await stat(join(sub, 'pause.json'))).isDirectory()).toBe(true);
    expect(await readdir(sub)).toEqual(['pause.json']);
  });

  it.skipIf(process.platform !== 'linux')(
    'on a full disk: fails with ENOSPC, keeps the old file whole, leaves no temp file',
    async (ctx) => {
      // A real full disk: a 64 KiB tmpfs, filled. Mounting needs root; elsewhere the test is skipped.
      const disk = await mkdtemp(join(dir, 'disk-'));
      if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0)
        return ctx.skip('no tmpfs could be mounted here (needs root)');
      try {
        await write(join(disk, 'state.json'), 'old');
        await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
        await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
        await expect(write(join(disk, 'state.json'), 'x'.repeat(8192))).rejects.toThrow(/ENOSPC/);
        expect(await readFile(join(disk, 'state.json'), 'utf8')).toBe('old');
        expect((await readdir(disk)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      } finally {
        spawnSync('umount', [disk]);
      }
    },
  );
});
