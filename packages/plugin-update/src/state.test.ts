import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@usepod-agent/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { updateSection } from './config.js';
import { operatorPlugins } from './ranges.js';
import { files, readLauncher, readUpdateState, writeAtomic } from './state.js';
import { readView, Updater } from './updater.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-update-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the state files (untrusted on read)', () => {
  it('an absent, garbled, oversized or ill-shaped file reads as empty, never as a crash', async () => {
    expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
    await writeFile(files(dir).launcher, '{not json');
    expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
    await writeFile(files(dir).launcher, JSON.stringify({ bad: [{ version: 'x'.repeat(70_000) }] }));
    expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
    await writeFile(
      files(dir).launcher,
      JSON.stringify({
        trial: { version: '../../etc/passwd', previous: null, timeoutMs: 5 },
        bad: [{ version: '0.4.2', reason: 'exited with code 3', at: '2026-12-07T00:00:00Z' }],
      }),
    );
    // One bad part is dropped; the rest is kept.
    expect(await readLauncher(dir)).toEqual({
      trial: null,
      bad: [{ version: '0.4.2', reason: 'exited with code 3', at: '2026-12-07T00:00:00Z' }],
    });
    await writeFile(files(dir).state, JSON.stringify({ checkedAt: 7, notified: ['0.4.2', '<script>'] }));
    expect(await readUpdateState(dir)).toEqual({ notified: [] });
    // A reason that would drive a terminal or reorder a line is folded as it is read.
    await writeFile(
      files(dir).launcher,
      JSON.stringify({ bad: [{ version: '0.4.2', reason: 'ok\u001b]0;owned\u0007\u202eevil', at: 'x' }] }),
    );
    const [bad] = (await readLauncher(dir)).bad;
    expect(bad?.reason).toBe('ok ]0;owned evil');
  });

  it('a FIFO in a state file’s place reads as empty at once, never holding the agent’s start', async () => {
    const f = files(dir);
    for (const path of [f.state, f.launcher]) execFileSync('mkfifo', [path]);
    try {
      expect(await readUpdateState(dir)).toEqual({ notified: [] });
      expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
    } finally {
      // A reader left blocked (without the fix) is let go: a writer that opens and closes ends its read.
      for (const path of [f.state, f.launcher])
        try {
          closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {}
    }
  });

  it('a folder or link named like a version but no semver one (01.0.0, 1.2.3-01) is no version: never a throw', async () => {
    const f = files(dir);
    for (const v of ['01.0.0', '1.2.3-01', '0.5.0', '0.4.0'])
      await mkdir(join(f.versions, v), { recursive: true });
    await symlink(join(f.versions, '01.0.0'), f.current);
    await writeFile(
      f.state,
      JSON.stringify({ notified: [], pending: { version: '1.2.3-01', at: 'x', installed: true } }),
    );
    const cfg = updateSection.parse({});
    const view = await readView(dir, cfg, '0.5.0');
    expect(view.kept).toEqual(['0.5.0', '0.4.0']);
    expect(view.current).toBeUndefined();
    expect(view.pending).toBeUndefined();
    await new Updater({
      config: cfg,
      dir,
      running: '0.5.0',
      providerId: () => undefined,
      log: silentLogger,
    }).prune();
  });

  it('is written 0600 by renaming a new file over the old: a planted link is replaced, its target untouched', async () => {
    const target = join(dir, 'elsewhere');
    await writeFile(target, 'precious');
    await symlink(target, files(dir).state);
    await writeAtomic(files(dir).state, { notified: [] });
    expect(await readFile(target, 'utf8')).toBe('precious');
    expect((await lstat(files(dir).state)).isSymbolicLink()).toBe(false);
    expect((await stat(files(dir).state)).mode & 0o777).toBe(0o600);
    expect(await readUpdateState(dir)).toEqual({ notified: [] });
  });
});

describe('the operator’s plugins', () => {
  it('reads each installed or linked plugin’s declared core range from where oclif recorded it', async () => {
    const linked = join(dir, 'linked');
    await mkdir(linked);
    await writeFile(
      join(linked, 'package.json'),
      JSON.stringify({ name: 'usepod-agent-plugin-l', peerDependencies: { '@usepod-agent/core': '<0.5.0' } }),
    );
    await mkdir(join(dir, 'node_modules', '@acme', 'usepod-agent-plugin-i'), { recursive: true });
    await writeFile(
      join(dir, 'node_modules', '@acme', 'usepod-agent-plugin-i', 'package.json'),
      JSON.stringify({
        name: '@acme/usepod-agent-plugin-i',
        version: '1.2.0',
        'usepod-agent': { core: '^0.4.0' },
      }),
    );
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        oclif: {
          plugins: [
            { type: 'link', name: 'usepod-agent-plugin-l', root: linked },
            { type: 'user', name: '@acme/usepod-agent-plugin-i' },
            { type: 'user', name: 'gone' },
            'garbage',
          ],
        },
      }),
    );
    expect(await operatorPlugins(dir)).toEqual([
      { name: 'usepod-agent-plugin-l', range: '<0.5.0', version: undefined, linked: true },
      // Its installed release: an update looks for a newer one when the new core strands this one.
      { name: '@acme/usepod-agent-plugin-i', range: '^0.4.0', version: '1.2.0', linked: false },
      { name: 'gone', range: undefined, version: undefined, linked: false },
    ]);
    expect(await operatorPlugins(join(dir, 'none'))).toEqual([]);
  });

  it('operatorPlugins: a linked plugin whose package.json is a FIFO or /dev/zero says no range, never waited on', async () => {
    const fifo = join(dir, 'fifo-plugin');
    const zero = join(dir, 'zero-plugin');
    await mkdir(fifo);
    await mkdir(zero);
    // Nobody writes into it: the update check waited on it for good.
    execFileSync('mkfifo', [join(fifo, 'package.json')]);
    await symlink('/dev/zero', join(zero, 'package.json'));
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        oclif: {
          plugins: [
            { type: 'link', name: 'usepod-agent-plugin-f', root: fifo },
            { type: 'link', name: 'usepod-agent-plugin-z', root: zero },
          ],
        },
      }),
    );
    expect(await operatorPlugins(dir)).toEqual([
      { name: 'usepod-agent-plugin-f', range: undefined, version: undefined, linked: true },
      { name: 'usepod-agent-plugin-z', range: undefined, version: undefined, linked: true },
    ]);
  });
});

describe('writeAtomic on a full disk', () => {
  it('fails, and leaves no temp file behind (one more at every check otherwise)', async (ctx) => {
    // A real full disk: a 64 KiB tmpfs, filled. Mounting needs root; elsewhere the test is skipped.
    const disk = join(dir, 'disk');
    await mkdir(disk);
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0) return ctx.skip();
    try {
      await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
      await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
      await expect(writeAtomic(join(disk, 'update-state.json'), { notes: 'x'.repeat(8192) })).rejects.toThrow(
        /ENOSPC/,
      );
      expect((await readdir(disk)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      spawnSync('umount', [disk]);
    }
  });
});
