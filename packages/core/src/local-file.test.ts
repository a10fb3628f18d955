import { spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalText, replaceFileSync } from './local-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-local-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readLocalText', () => {
  it('reads a small regular file; says missing for nothing there', async () => {
    await writeFile(join(dir, 'a.json'), '{"a":1}');
    expect(await readLocalText(join(dir, 'a.json'), 100)).toEqual({ kind: 'text', text: '{"a":1}' });
    await writeFile(join(dir, 'empty'), '');
    expect(await readLocalText(join(dir, 'empty'), 100)).toEqual({ kind: 'text', text: '' });
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
    expect(await readLocalText(join(dir, 'link'), 100)).toEqual({ kind: 'text', text: 'secret' });
    expect(await readLocalText(join(dir, 'link'), 100, { noLink: true })).toMatchObject({
      kind: 'refused',
      why: 'is a symbolic link',
    });
  });
});

describe('replaceFileSync', () => {
  it.skipIf(process.platform === 'win32')(
    'replaces a link planted at the path instead of writing through it, 0600, no temp file left',
    async () => {
      const sub = await mkdtemp(join(dir, 'replace-'));
      await writeFile(join(sub, 'victim'), 'theirs');
      await symlink(join(sub, 'victim'), join(sub, 'page.html'));
      replaceFileSync(join(sub, 'page.html'), 'ours');
      expect(await readFile(join(sub, 'victim'), 'utf8')).toBe('theirs');
      const st = await lstat(join(sub, 'page.html'));
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      expect(await readFile(join(sub, 'page.html'), 'utf8')).toBe('ours');
      expect((await readdir(sub)).sort()).toEqual(['page.html', 'victim']);
    },
  );
});
