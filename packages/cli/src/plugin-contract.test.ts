import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_PACKAGE_JSON } from '@usepod-agent/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageNameAt } from './plugin-contract.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-contract-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A folder whose package.json names `name` and is exactly `size` bytes (padded with spaces). */
async function folderWith(name: string, size: number): Promise<string> {
  const folder = await mkdtemp(join(dir, 'pkg-'));
  const json = JSON.stringify({ name });
  await writeFile(join(folder, 'package.json'), json + ' '.repeat(size - json.length));
  return folder;
}

describe('packageNameAt (what `plugins link PATH` linked)', () => {
  it('reads a package.json up to core’s MAX_PACKAGE_JSON, the loader’s bound, and none past it', async () => {
    expect(packageNameAt(await folderWith('usepod-agent-plugin-a', MAX_PACKAGE_JSON))).toBe(
      'usepod-agent-plugin-a',
    );
    expect(packageNameAt(await folderWith('usepod-agent-plugin-b', MAX_PACKAGE_JSON + 1))).toBeUndefined();
  });

  it.skipIf(process.platform === 'win32')('a FIFO in its place is never waited on', async () => {
    const folder = join(dir, 'fifo');
    await mkdir(folder);
    expect(spawnSync('mkfifo', [join(folder, 'package.json')]).status).toBe(0);
    expect(packageNameAt(folder)).toBeUndefined();
  });
});
