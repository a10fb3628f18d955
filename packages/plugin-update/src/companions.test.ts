import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPANIONS_FILE,
  companionsBeside,
  fetchPackument,
  type Packument,
  packumentUrl,
  pickCompanion,
  planCompanions,
} from './companions.js';
import { decide } from './decide.js';
import { installVersion } from './npm.js';
import { setup } from './setup.js';

/** The built package, as the CLI loads it. */
const DIST = fileURLToPath(new URL('../dist/companions.js', import.meta.url));

const release = (version: string, core: string, extra: Record<string, unknown> = {}) => ({
  name: 'usepod-agent-plugin-x',
  version,
  peerDependencies: { '@usepod-agent/core': core },
  ...extra,
});

const doc = (tags: Record<string, string>, ...versions: Record<string, unknown>[]): Packument => ({
  name: 'usepod-agent-plugin-x',
  'dist-tags': tags,
  versions: Object.fromEntries(versions.map((v) => [v.version as string, v])),
});

const on = (core: string, installed = '1.0.0', channel = 'latest') => ({ core, channel, installed });

describe('pickCompanion: a plugin’s release for a new core', () => {
  const p = doc(
    { latest: '1.2.0', next: '2.0.0-rc.1' },
    release('1.0.0', '>=0.4.0 <0.5.0'),
    release('1.1.0', '^0.5.0'),
    release('1.2.0', '>=0.5.0 <0.7.0'),
    release('1.3.0', '^0.5.0'),
    release('2.0.0-rc.1', '>=0.5.0-0'),
  );

  it('the highest release whose declared range includes the new core, up to the plugin’s latest tag', () => {
    expect(pickCompanion(p, on('0.5.0'))).toBe('1.2.0');
    expect(pickCompanion(p, on('0.6.3'))).toBe('1.2.0');
  });

  it('none when no release declares the new core', () => {
    expect(pickCompanion(p, on('0.7.0'))).toBeUndefined();
    expect(pickCompanion(doc({ latest: '1.0.0' }, release('1.0.0', '^0.4.0')), on('0.5.0'))).toBeUndefined();
  });

  it('no prerelease on the latest channel; on next, up to the plugin’s own next tag', () => {
    expect(pickCompanion(p, on('0.7.0', '1.0.0', 'next'))).toBe('2.0.0-rc.1');
    expect(pickCompanion(p, on('0.7.0', '1.0.0', 'latest'))).toBeUndefined();
    // A channel the plugin has no tag for is capped by its latest.
    expect(pickCompanion(p, on('0.7.0', '1.0.0', 'beta'))).toBeUndefined();
    // A prerelease below the plugin's latest is still none on the latest channel.
    const rc = doc({ latest: '1.1.0' }, release('1.1.0-rc.1', '^0.5.0'), release('1.1.0', '^0.6.0'));
    expect(pickCompanion(rc, on('0.5.0'))).toBeUndefined();
    expect(pickCompanion(rc, on('0.5.0', '1.0.0', 'next'))).toBe('1.1.0-rc.1');
  });

  it('never an older release than the one installed, a deprecated one, or one claiming another version', () => {
    expect(pickCompanion(p, on('0.5.0', '1.2.0'))).toBeUndefined();
    const q = doc(
      { latest: '1.3.0' },
      release('1.1.0', '^0.5.0'),
      release('1.2.0', '^0.5.0', { deprecated: 'broken' }),
      { ...release('1.3.0', '^0.5.0'), version: '9.9.9' },
    );
    expect(pickCompanion(q, on('0.5.0'))).toBe('1.1.0');
  });

  it('reads `"usepod-agent": { "core" }` too; a release without a range or with a garbled one is skipped', () => {
    const q = doc(
      { latest: '1.4.0' },
      { name: 'usepod-agent-plugin-x', version: '1.1.0', 'usepod-agent': { core: '^0.5.0' } },
      { name: 'usepod-agent-plugin-x', version: '1.2.0' },
      release('1.3.0', 'not a range'),
      release('1.4.0', '^0.5.0'),
      release('1.5.0; rm -rf /', '^0.5.0'),
    );
    expect(pickCompanion(q, on('0.5.0'))).toBe('1.4.0');
    expect(pickCompanion({ ...q, 'dist-tags': { latest: '1.2.0' } }, on('0.5.0'))).toBe('1.1.0');
  });
});

describe('planCompanions and decide', () => {
  const plugins = [
    { name: 'usepod-agent-plugin-x', range: '^0.4.0', version: '1.0.0', linked: false },
    { name: 'usepod-agent-plugin-ok', range: '>=0.4.0', version: '1.0.0', linked: false },
    { name: 'usepod-agent-plugin-mine', range: '^0.4.0', version: '1.0.0', linked: true },
  ];
  const registry = async () => 'http://127.0.0.1:1/';

  it('a stranded installed plugin with a compatible release comes along; the update is not held for it', async () => {
    const asked: string[] = [];
    const plan = await planCompanions(plugins.slice(0, 2), '0.5.0', {
      channel: 'latest',
      registry,
      packument: async (_r, name) => {
        asked.push(name);
        return doc({ latest: '1.1.0' }, release('1.1.0', '^0.5.0'));
      },
    });
    // Only the plugin the version strands is looked up.
    expect(asked).toEqual(['usepod-agent-plugin-x']);
    expect(plan.companions).toEqual([{ name: 'usepod-agent-plugin-x', from: '1.0.0', version: '1.1.0' }]);
    const input = {
      mode: 'auto' as const,
      running: '0.4.1',
      release: { version: '0.5.0', publishedAt: 0 },
      bad: [],
      plugins,
      now: 1,
      providerId: 'p',
      minAgeMs: 0,
      spreadMs: 0,
      windows: [],
      timezone: 'UTC',
    };
    // The linked one still holds it back; without it, it installs.
    expect(decide({ ...input, companions: plan.companions })).toEqual({
      do: 'held',
      version: '0.5.0',
      why: 'update to 0.5.0 held back: plugin usepod-agent-plugin-mine requires @usepod-agent/core ^0.4.0',
    });
    expect(decide({ ...input, plugins: plugins.slice(0, 2), companions: plan.companions })).toEqual({
      do: 'install',
      version: '0.5.0',
    });
    expect(decide({ ...input, plugins: plugins.slice(0, 2) }).do).toBe('held');
  });

  it('a linked plugin is never looked up; a failed look-up finds nothing and says why', async () => {
    const asked: string[] = [];
    const plan = await planCompanions(plugins, '0.5.0', {
      channel: 'latest',
      registry,
      packument: async (_r, name) => {
        asked.push(name);
        throw new Error('the registry answered HTTP 404');
      },
    });
    expect(asked).toEqual(['usepod-agent-plugin-x']);
    expect(plan).toEqual({
      companions: [],
      lookups: ['usepod-agent-plugin-x: the registry answered HTTP 404'],
    });
  });
});

describe('fetchPackument: the registry’s answer is untrusted', () => {
  let server: Server;
  let url: string;
  let answer: (res: import('node:http').ServerResponse, path: string) => void;
  beforeAll(async () => {
    server = createServer((req, res) => answer(res, req.url ?? ''));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a packument of the checked shape, for that name; a scoped name is one path segment', async () => {
    let asked = '';
    answer = (res, path) => {
      asked = path;
      res.end(
        JSON.stringify({
          ...doc({ latest: '1.0.0' }, release('1.0.0', '^0.4.0')),
          name: '@acme/usepod-agent-plugin-x',
        }),
      );
    };
    const p = await fetchPackument(url, '@acme/usepod-agent-plugin-x');
    expect(asked).toBe('/@acme%2fusepod-agent-plugin-x');
    expect(Object.keys(p.versions)).toEqual(['1.0.0']);
    expect(packumentUrl('http://r.example/npm', 'x')).toBe('http://r.example/npm/x');
  });

  it('refuses a name that is not one, another package’s packument, not JSON, too big, too slow', async () => {
    answer = (res) => res.end('{}');
    await expect(fetchPackument(url, '../../etc/passwd')).rejects.toThrow('not an npm package name');
    await expect(fetchPackument(url, 'x --registry=evil')).rejects.toThrow('not an npm package name');
    answer = (res) => res.end(JSON.stringify(doc({}, release('1.0.0', '^0.4.0'))));
    await expect(fetchPackument(url, 'usepod-agent-plugin-y')).rejects.toThrow('is not one');
    answer = (res) => res.end('<html>');
    await expect(fetchPackument(url, 'usepod-agent-plugin-x')).rejects.toThrow('not JSON');
    answer = (res) => {
      res.statusCode = 404;
      res.end('{}');
    };
    await expect(fetchPackument(url, 'usepod-agent-plugin-x')).rejects.toThrow('HTTP 404');
    // 9 MB streamed without a length: cut at 8 MB.
    answer = (res) => {
      const mb = Buffer.alloc(1024 * 1024, 0x20);
      for (let i = 0; i < 9; i++) res.write(mb);
      res.end();
    };
    await expect(fetchPackument(url, 'usepod-agent-plugin-x')).rejects.toThrow('too big');
    answer = () => {};
    await expect(fetchPackument(url, 'usepod-agent-plugin-x', 300)).rejects.toThrow();
  });
});

describe('the version folder', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'usepod-companions-'));
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  it('companionsBeside: the releases an update listed beside the CLI, each at the version it says', async () => {
    const nm = join(work, 'versions', '0.5.0', 'node_modules');
    for (const [name, version] of [
      ['usepod-agent-plugin-x', '1.1.0'],
      ['@acme/usepod-agent-plugin-y', '2.0.0'],
      ['usepod-agent-plugin-z', '3.0.0'],
    ] as const) {
      await mkdir(join(nm, name), { recursive: true });
      await writeFile(join(nm, name, 'package.json'), JSON.stringify({ name, version }));
    }
    await mkdir(join(nm, 'usepod-agent'), { recursive: true });
    const cli = join(nm, 'usepod-agent');
    expect(companionsBeside(cli).size).toBe(0);
    await writeFile(
      join(work, 'versions', '0.5.0', COMPANIONS_FILE),
      JSON.stringify({
        'usepod-agent-plugin-x': '1.1.0',
        '@acme/usepod-agent-plugin-y': '2.0.0',
        // Listed at another version than the one on disk, or not on disk: not loaded from here.
        'usepod-agent-plugin-z': '3.0.1',
        'usepod-agent-plugin-w': '1.0.0',
      }),
    );
    expect([...companionsBeside(cli)]).toEqual([
      ['usepod-agent-plugin-x', { version: '1.1.0', root: join(nm, 'usepod-agent-plugin-x') }],
      ['@acme/usepod-agent-plugin-y', { version: '2.0.0', root: join(nm, '@acme/usepod-agent-plugin-y') }],
    ]);
    // A CLI not in a node_modules folder (the monorepo) has none; a garbled file gives none.
    expect(companionsBeside(join(work, 'packages', 'cli')).size).toBe(0);
    await writeFile(join(work, 'versions', '0.5.0', COMPANIONS_FILE), '{"../../x": "1.0.0"}');
    expect(companionsBeside(cli).size).toBe(0);
  });

  it('companionsBeside: a FIFO or /dev/zero in place of its files gives none, never waited on or read whole', async () => {
    const v = join(work, 'versions', '0.6.0');
    const nm = join(v, 'node_modules');
    await mkdir(join(nm, 'usepod-agent'), { recursive: true });
    await mkdir(join(nm, 'usepod-agent-plugin-x'), { recursive: true });
    // A read waiting on the FIFO would hold this very thread: asked in a process of its own, with a bound.
    const ask = () =>
      spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { companionsBeside } = await import(${JSON.stringify(DIST)}); console.log(companionsBeside(${JSON.stringify(join(nm, 'usepod-agent'))}).size);`,
        ],
        { timeout: 10_000, killSignal: 'SIGKILL', encoding: 'utf8' },
      );
    execFileSync('mkfifo', [join(v, COMPANIONS_FILE)]);
    let out = ask();
    expect(out.signal, out.stderr).toBeNull();
    expect(out.stdout.trim()).toBe('0');
    // The list is fine, the package.json it points at is not.
    await rm(join(v, COMPANIONS_FILE));
    await writeFile(join(v, COMPANIONS_FILE), JSON.stringify({ 'usepod-agent-plugin-x': '1.0.0' }));
    execFileSync('mkfifo', [join(nm, 'usepod-agent-plugin-x', 'package.json')]);
    out = ask();
    expect(out.signal, out.stderr).toBeNull();
    expect(out.stdout.trim()).toBe('0');
    await rm(join(nm, 'usepod-agent-plugin-x', 'package.json'));
    await symlink('/dev/zero', join(nm, 'usepod-agent-plugin-x', 'package.json'));
    out = ask();
    expect(out.signal, out.stderr).toBeNull();
    expect(out.stdout.trim()).toBe('0');
  }, 40_000);

  it('installVersion refuses a plugin release that is not a name and a version before npm sees it', async () => {
    for (const c of [
      { name: '--registry=http://evil', version: '1.0.0' },
      { name: 'usepod-agent-plugin-x', version: 'latest' },
      { name: 'usepod-agent-plugin-x', version: '1.0.0 --ignore-scripts=false' },
    ])
      await expect(installVersion(join(work, 'v'), '0.5.0', undefined, [c])).rejects.toThrow(
        'is not a plugin release',
      );
  });

  it('setup keeps a version already installed as it is: the plugin releases an update brought stay', async () => {
    // 0.5.0 came as an update with a plugin's compatible release; `update --setup` (or a Windows
    // `service install`) run on it again must not install it anew without that release.
    const dir = join(work, 'setup-kept');
    const v = join(dir, 'versions', '0.5.0');
    await mkdir(join(v, 'node_modules', 'usepod-agent', 'bin'), { recursive: true, mode: 0o700 });
    await writeFile(join(v, 'node_modules', 'usepod-agent', 'bin', 'run.js'), '');
    await writeFile(join(v, COMPANIONS_FILE), '{"usepod-agent-plugin-x":"1.1.0"}\n');
    // A registry nobody answers at: npm asked at all fails the setup.
    const launcher = await setup(dir, '0.5.0', 'http://127.0.0.1:9/');
    expect(launcher).toBe(join(dir, 'launcher.mjs'));
    expect(await readFile(join(v, COMPANIONS_FILE), 'utf8')).toBe('{"usepod-agent-plugin-x":"1.1.0"}\n');
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '0.5.0'));
  });
});
