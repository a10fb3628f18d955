import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, cli, homeEnv } from './cli.js';

/**
 * A config file the agent's user cannot read (a volume mounted root-only into a container, a file
 * `setup` wrote as root) is one line naming it: never a silent fallback to other settings, such as the
 * USEPOD_* variables alone. As root the CLI runs as `nobody` to meet the permission it would meet.
 */
const asRoot = process.getuid?.() === 0;
/**
 * As root the CLI must be readable by `nobody`: a checkout in a private folder (mktemp's 0700) is not,
 * and there root cannot meet a permission at all; the test then has nothing to run.
 */
const canTest =
  !asRoot ||
  spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(BIN)})`], {
    uid: 65534,
    gid: 65534,
  }).status === 0;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-access-'));
  await chmod(dir, 0o755);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const env = () =>
  homeEnv(dir, {
    XDG_CACHE_HOME: join(dir, 'cache'),
    // Enough for a config from the environment alone, which is what a skipped file would leave.
    USEPOD_BACKEND_KIND: 'vllm',
    USEPOD_BACKEND_URL: 'http://127.0.0.1:8000',
  });
const run = (args: string[]) =>
  cli(args, { env: env(), cwd: dir, ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });

describe('a config file the agent cannot read', () => {
  it.skipIf(!canTest)(
    'is named in one line, in the default lookup and at --config, with the user it runs as',
    async () => {
      await mkdir(join(dir, 'cache'), { mode: 0o777 });
      await chmod(join(dir, 'cache'), 0o777);
      const folder = join(dir, 'xdg', 'usepod-agent');
      await mkdir(folder, { recursive: true });
      const file = join(folder, 'agent.toml');
      await writeFile(file, '[limits]\nmax_concurrent = 4\n', { mode: 0o600 });
      // Root owns it (mode 0600) when the test is root; otherwise no one may read it.
      if (!asRoot) await chmod(file, 0o000);
      // As `nobody` the CLI cannot remake a stale oclif manifest in this checkout, nor remove it: the
      // first CLI run after a build failed on that (EACCES) instead of naming the config. Made stale here
      // so that the run meets it whatever ran before.
      const manifest = join(dirname(BIN), '..', 'oclif.manifest.json');
      if (asRoot && existsSync(manifest)) await utimes(manifest, 0, 0);
      for (const args of [['validate'], ['validate', '--config', file]]) {
        const out = await run(args);
        expect(out.code, out.stderr).toBe(2);
        const lines = out.stderr.trim().split('\n');
        expect(lines[0]).toMatch(
          /^usepod-agent: config file .*agent\.toml cannot be read by this user \(uid \d+\): permission denied on it or its folder \(USEPOD_CONFIG_UNREADABLE\)$/,
        );
        expect(out.stderr).not.toMatch(/\n\s+at /);
      }
      // A folder the user cannot enter hides the file from a plain existence check: still named, not skipped.
      if (asRoot) {
        await chmod(file, 0o644);
        await chmod(folder, 0o700);
        const out = await run(['validate']);
        expect(out.code, out.stderr).toBe(2);
        expect(out.stderr).toMatch(/agent\.toml cannot be read by this user .*\(USEPOD_CONFIG_UNREADABLE\)/);
      }
    },
  );
});

describe('a --config that is no config file', () => {
  it('a FIFO, a device, a folder or a file over 1 MB is named in one line, never waited on or read whole', async () => {
    const fifo = join(dir, 'fifo.toml');
    // Nobody ever writes into it: a read would wait for good.
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const big = join(dir, 'big.toml');
    await writeFile(big, `# ${'x'.repeat(2 * 1024 * 1024)}\n`);
    const cases: [string, RegExp][] = [
      [fifo, /fifo\.toml is not a regular file \(a device, FIFO or socket\)/],
      // Read whole, /dev/zero would fill memory until V8's string limit.
      ['/dev/zero', /\/dev\/zero is not a regular file \(a device, FIFO or socket\)/],
      [dir, /is a folder, not a file/],
      [big, /big\.toml is 2\.0 MB, more than such a file ever holds \(1048576 bytes\)/],
    ];
    for (const [path, why] of cases) {
      const out = await cli(['validate', '--config', path], { env: env(), cwd: dir });
      expect(out.code, out.stderr).toBe(2);
      const first = out.stderr.trim().split('\n')[0]!;
      expect(first).toMatch(why);
      expect(first).toMatch(/\(USEPOD_CONFIG_UNREADABLE\)$/);
      expect(out.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('an identity file that is a FIFO or a device is named in one line, never waited on or read whole', async () => {
    const fifo = join(dir, 'fifo.key');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    for (const [key, why] of [
      [fifo, /identity file .*fifo\.key is not a regular file \(a device, FIFO or socket\)/],
      ['/dev/zero', /identity file \/dev\/zero is not a regular file/],
    ] as const) {
      const cfg = join(dir, 'id.toml');
      await writeFile(
        cfg,
        `[identity]\nkey_path = "${key}"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n`,
      );
      const out = await cli(['identity', '--config', cfg], { env: env(), cwd: dir });
      expect(out.code, out.stderr).toBe(2);
      const first = out.stderr.trim().split('\n')[0]!;
      expect(first).toMatch(why);
      expect(first).toMatch(/\(USEPOD_IDENTITY_IO\)$/);
      expect(out.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
