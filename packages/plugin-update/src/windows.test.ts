import { lstat, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { beginSwitch, entryOf, linked, point, recoverCurrent, rollBack } from '../launcher/launcher.mjs';
import { npmInvocation } from './npm-command.js';
import { pointLink } from './setup.js';
import { readLauncher } from './state.js';

/**
 * The per-platform parts of the side-by-side folder, as pure helpers with the platform given: Windows
 * cannot run here, but its code paths can (a junction asked for on Linux is a symlink; what differs is
 * the remove-then-rename flip and its repair, which run the same).
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-update-win-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function version(v: string): Promise<void> {
  const bin = join(dir, 'versions', v, 'node_modules', 'usepod-agent', 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'run.js'), '');
}

describe('the CLI entry of a version folder', () => {
  it('is node_modules/usepod-agent/bin/run.js under the --prefix folder, with the platform’s separators', () => {
    expect(entryOf('/var/lib/usepod-agent/update/versions/1.2.3', 'linux')).toBe(
      '/var/lib/usepod-agent/update/versions/1.2.3/node_modules/usepod-agent/bin/run.js',
    );
    expect(entryOf('C:\\ProgramData\\usepod-agent\\update\\versions\\1.2.3', 'win32')).toBe(
      'C:\\ProgramData\\usepod-agent\\update\\versions\\1.2.3\\node_modules\\usepod-agent\\bin\\run.js',
    );
  });
});

describe('flipping a link', () => {
  it('on Windows removes the old link, then renames the new one into place (a rename cannot replace it there)', async () => {
    await version('1.0.0');
    await version('1.0.1');
    point(dir, 'current', '1.0.0', 'win32');
    expect(linked(dir, 'current')).toBe('1.0.0');
    point(dir, 'current', '1.0.1', 'win32');
    expect(linked(dir, 'current')).toBe('1.0.1');
    expect((await lstat(join(dir, 'current'))).isSymbolicLink()).toBe(true);
    // No temporary link is left behind.
    expect((await readdir(dir)).sort()).toEqual(['current', 'versions']);
    // plugin-update's own flip is the launcher's.
    await pointLink(dir, 'previous', '1.0.0', 'win32');
    expect(linked(dir, 'previous')).toBe('1.0.0');
    await expect(pointLink(dir, 'current', '../../etc', 'win32')).rejects.toThrow(/not a version/);
  });

  it('on Unix renames a new link over the old one', async () => {
    await version('1.0.0');
    await version('1.0.1');
    point(dir, 'current', '1.0.0', 'linux');
    point(dir, 'current', '1.0.1', 'linux');
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.1'));
  });
});

describe('a flip cut short (no `current`) is repaired', () => {
  const none = { trial: null, bad: [] };

  it('with the version the trial came from, when a switch or a roll-back was cut between its two steps', async () => {
    for (const v of ['1.0.0', '1.0.1', '1.0.2']) await version(v);
    // As Windows leaves it: the old link removed, the new one still under its temporary name.
    await symlink(join('versions', '1.0.1'), join(dir, '.current.4242.tmp'));
    const trial = { version: '1.0.1', previous: '1.0.0', timeoutMs: 1000 };
    expect(recoverCurrent(dir, { trial, bad: [] }, 'win32')).toBe('1.0.0');
    expect(linked(dir, 'current')).toBe('1.0.0');
    expect((await readdir(dir)).sort()).toEqual(['current', 'versions']);
  });

  it('else with `previous`, else with the newest complete install not recorded bad; nothing when there is none', async () => {
    for (const v of ['1.0.0', '1.0.2', '1.0.10']) await version(v);
    await mkdir(join(dir, 'versions', '1.0.11')); // half an install: no entry
    await symlink(join('versions', '1.0.0'), join(dir, 'previous'));
    expect(recoverCurrent(dir, none, 'win32')).toBe('1.0.0');
    await rm(join(dir, 'current'));
    await rm(join(dir, 'previous'));
    const bad = [{ version: '1.0.10', reason: 'exited with code 3', at: '2026-12-07T00:00:00Z' }];
    expect(recoverCurrent(dir, { trial: null, bad }, 'win32')).toBe('1.0.2');
    expect(linked(dir, 'current')).toBe('1.0.2');
    await rm(join(dir, 'current'));
    await rm(join(dir, 'versions'), { recursive: true });
    expect(recoverCurrent(dir, none, 'win32')).toBeUndefined();
    expect(linked(dir, 'current')).toBeUndefined();
  });
});

describe('a roll-back cut short', () => {
  it('has the version recorded bad before the flip and the trial kept until after it, so the next start finishes it', async () => {
    await version('1.0.0');
    await version('1.0.1');
    point(dir, 'previous', '1.0.0', 'win32');
    point(dir, 'current', '1.0.1', 'win32');
    const trial = { version: '1.0.1', previous: '1.0.0', timeoutMs: 1000 };
    // The flip fails (here: something sits where the new link goes), as a stop or a full disk would cut it.
    const blocker = join(dir, `.current.${process.pid}.tmp`);
    await mkdir(join(blocker, 'x'), { recursive: true });
    expect(rollBack(dir, { trial: { ...trial }, bad: [] }, 'failed its self-test of m1', 'win32')).toBe(
      false,
    );
    const after = await readLauncher(dir);
    expect(after.bad).toEqual([
      { version: '1.0.1', reason: 'failed its self-test of m1', at: expect.any(String) },
    ]);
    expect(after.trial).toEqual(trial);
    // The next start sees the trial still on `current` and rolls back again; the first reason stands.
    await rm(blocker, { recursive: true });
    expect(linked(dir, 'current')).toBe('1.0.1');
    expect(rollBack(dir, after, 'was on trial when the launcher stopped', 'win32')).toBe(true);
    expect(linked(dir, 'current')).toBe('1.0.0');
    expect(await readLauncher(dir)).toEqual({
      trial: null,
      bad: [{ version: '1.0.1', reason: 'failed its self-test of m1', at: expect.any(String) }],
    });
  });
});

describe('a switch cut short', () => {
  it('never leaves the new version on `current` unjudged: a flip that fails keeps the version before', async () => {
    await version('1.0.0');
    await version('1.0.1');
    point(dir, 'current', '1.0.0', 'win32');
    // The flip fails (something sits where the new link goes), as a full disk would fail it. A stop between
    // the trial's record and the flip is the launcher test's `a trial it did not see to its end`.
    await mkdir(join(dir, `.current.${process.pid}.tmp`, 'x'), { recursive: true });
    expect(beginSwitch(dir, { trial: null, bad: [] }, { version: '1.0.1', timeoutMs: 1000 }, 'win32')).toBe(
      false,
    );
    expect(linked(dir, 'current')).toBe('1.0.0');
    // Recorded bad, so the agent does not ask for it again at every start.
    expect(await readLauncher(dir)).toEqual({
      trial: null,
      bad: [
        {
          version: '1.0.1',
          reason: expect.stringMatching(/^could not be switched to \(E/),
          at: expect.any(String),
        },
      ],
    });
  });
});

describe('npm, per platform', () => {
  const at =
    (...present: string[]) =>
    (p: string) =>
      present.includes(p);

  it('Unix: the npm beside node, else the one on PATH', () => {
    expect(npmInvocation(['view', 'x'], 'linux', '/opt/node/bin/node', at('/opt/node/bin/npm'))).toEqual({
      file: '/opt/node/bin/npm',
      args: ['view', 'x'],
      verbatim: false,
    });
    expect(npmInvocation(['view'], 'darwin', '/usr/local/bin/node', at()).file).toBe('npm');
  });

  it('Windows: npm’s own script run by node.exe, no shell, so no argument is ever read by cmd.exe', () => {
    const node = 'C:\\Program Files\\nodejs\\node.exe';
    const cli = 'C:\\Program Files\\nodejs\\node_modules\\npm\\bin\\npm-cli.js';
    const args = ['install', '--prefix', 'C:\\Users\\A & B\\update\\versions\\1.0.0', 'usepod-agent@1.0.0'];
    expect(npmInvocation(args, 'win32', node, at(cli))).toEqual({
      file: node,
      args: [cli, ...args],
      verbatim: false,
    });
  });

  it('Windows without npm-cli.js: npm.cmd through cmd.exe, every argument quoted, one cmd.exe would expand refused', () => {
    const node = 'C:\\nodejs\\node.exe';
    const r = npmInvocation(
      ['install', '--prefix', 'C:\\Users\\A & B\\v', 'usepod-agent@1.0.0'],
      'win32',
      node,
      at('C:\\nodejs\\npm.cmd'),
    );
    expect(r).toEqual({
      file: 'cmd.exe',
      args: [
        '/d',
        '/s',
        '/c',
        '""C:\\nodejs\\npm.cmd" "install" "--prefix" "C:\\Users\\A & B\\v" "usepod-agent@1.0.0""',
      ],
      verbatim: true,
    });
    for (const bad of ['%PATH%', 'a"b', 'x^y', 'a!b', 'a\r\nb'])
      expect(() => npmInvocation(['install', bad], 'win32', node, at())).toThrow(
        /cannot pass .* through cmd\.exe/,
      );
  });
});
