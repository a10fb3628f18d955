import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdentityLock } from './lock.js';

/**
 * A real full disk: a 64 KiB tmpfs, filled. Mounting needs root (and a kernel that lets this container
 * mount); elsewhere the test is skipped, said by its name.
 */
let dir: string;
let mounted = false;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-lock-'));
  mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status === 0;
});
afterEach(async () => {
  if (mounted) spawnSync('umount', [dir]);
  await rm(dir, { recursive: true, force: true });
});

/** Fills the mounted disk to its last byte. */
async function fill(): Promise<void> {
  await writeFile(join(dir, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
  await writeFile(join(dir, 'fill2'), Buffer.alloc(4096)).catch(() => {});
}

describe('identity lock on a full disk', () => {
  it('is taken with a warning, not refused: a full disk must not keep the agent from starting', async (ctx) => {
    if (!mounted) ctx.skip('no tmpfs could be mounted here (needs root)');
    await fill();
    const key = join(dir, 'identity.key');
    const lock = IdentityLock.acquire(key);
    expect(lock.warning).toBe(
      `the identity lock ${key}.lock could not record this agent (ENOSPC): another agent started on this key now would not be refused; free space on its disk`,
    );
    // Still one agent per key in this process, and the lock is removed at stop.
    expect(() => IdentityLock.acquire(key)).toThrow(/another agent in this process/);
    lock.release();
    expect((await readdir(dir)).sort()).toEqual(['fill', 'fill2']);
  });
});
