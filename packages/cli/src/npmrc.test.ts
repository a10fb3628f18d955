import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { leavePeersToTheAgent } from './plugins.js';

/**
 * The plugin root's .npmrc (`plugins install`): an operator installing private plugins keeps a registry
 * token there. Adding `legacy-peer-deps` rewrites the file: it must not widen who can read it.
 */
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('the plugin root’s .npmrc', () => {
  it('keeps a token it holds to its owner: rewritten 0600 (it was 0644, whatever the file had been)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-npmrc-'));
    dirs.push(dir);
    const file = join(dir, '.npmrc');
    const token = '//npm.example.com/:_authToken=npm_secret';
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    expect(await leavePeersToTheAgent(dir)).toBeUndefined();
    expect(await readFile(file, 'utf8')).toBe(`${token}\nlegacy-peer-deps=true\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('is made 0600 when there was none, and left alone when it says so already', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-npmrc-'));
    dirs.push(dir);
    const file = join(dir, '.npmrc');
    await leavePeersToTheAgent(dir);
    expect(await readFile(file, 'utf8')).toBe('legacy-peer-deps=true\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const before = (await stat(file)).mtimeMs;
    await leavePeersToTheAgent(dir);
    expect((await stat(file)).mtimeMs).toBe(before);
  });
});
