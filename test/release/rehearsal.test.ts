import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type EngineEmulator, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, PUBLIC, pack, type Ran, ROOT, sh as run, type Scratch, scratch } from './kit.js';

/**
 * A release, rehearsed the way operators and plugin authors will meet it (issue 17, point 1): a real npm
 * registry (verdaccio, pinned in devDependencies) on 127.0.0.1; every public package packed and
 * published to it; the CLI installed globally into a scratch prefix; the guide's plugin and the TGI
 * example copied outside this repository, installed from the registry, built, passed through the
 * conformance suite, published, then `plugins install`ed by name; a job served by `run` through the
 * installed plugin; `upgrade` of that install. Everything else the registry is asked for it fetches from
 * the public registry (the machine's npm cache answers most of it).
 */
let s: Scratch;
let work: string;
let npmEnv: NodeJS.ProcessEnv;
/** The operator's machine: HOME and XDG folders of its own, the global prefix of `npm install -g`. */
let home: string;
let prefix: string;
let agent: string;
let operatorEnv: NodeJS.ProcessEnv;

const sh = (cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Ran> =>
  run(cmd, args, { cwd: opts.cwd, env: opts.env ?? npmEnv });

const npm = (args: string[], cwd: string, env?: NodeJS.ProcessEnv) =>
  sh('npm', args, { cwd, ...(env ? { env } : {}) });

beforeAll(async () => {
  s = await scratch('usepod-release-');
  work = s.work;
  // An `npm install -g` that ignored the running install's prefix would land in default-prefix.
  npmEnv = { ...s.reg.npmEnv, npm_config_prefix: join(work, 'default-prefix') };
  home = s.home;
  prefix = join(work, 'prefix');
  agent = join(prefix, 'bin', 'usepod-agent');
  operatorEnv = s.operatorEnv({
    npm_config_prefix: join(work, 'default-prefix'),
    PATH: `${join(prefix, 'bin')}:${process.env.PATH}`,
    // Many developers' shells set this; the installed CLI must still run its compiled commands.
    NODE_ENV: 'development',
  });
}, 90_000);

// USEPOD_KEEP_REHEARSAL=1 leaves the registry's storage, the prefix and the plugin folders to look at.
afterAll(() => s?.close());

/** What `tar -tzf` lists, without the `package/` every npm tarball starts with. */
async function tarball(file: string): Promise<string[]> {
  const { stdout } = await ok(sh('tar', ['-tzf', file], { cwd: work }), `tar -tzf ${file}`);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
}

function exportTargets(exports: unknown): string[] {
  if (typeof exports === 'string') return [exports];
  if (!exports || typeof exports !== 'object') return [];
  return Object.values(exports).flatMap(exportTargets);
}

describe('release rehearsal through a real registry', () => {
  it('packs every public package with what it needs and nothing else, and publishes it without a warning', async () => {
    const out = join(work, 'tarballs');
    await mkdir(out);
    for (const dir of PUBLIC) {
      const cwd = join(ROOT, 'packages', dir);
      const pkg = JSON.parse(await readFile(join(cwd, 'package.json'), 'utf8')) as Record<string, unknown>;
      const filename = await pack(dir, out, npmEnv);
      const files = await tarball(filename);
      expect(files, dir).toContain('LICENSE');
      expect(
        files.some((f) => f.startsWith('dist/')),
        dir,
      ).toBe(true);
      expect(
        files.filter((f) => f.includes('tsbuildinfo')),
        dir,
      ).toEqual([]);
      for (const t of exportTargets(pkg.exports))
        expect(files, `${dir} exports ${t}`).toContain(t.replace(/^\.\//, ''));
      if (dir === 'cli') expect(files).toContain('oclif.manifest.json');
      if (dir === 'cli') {
        const { stdout } = await ok(
          sh('tar', ['-xzOf', filename, 'package/oclif.manifest.json'], { cwd: work }),
          'manifest',
        );
        const commands = Object.values(JSON.parse(stdout).commands) as { relativePath: string[] }[];
        // Compiled commands only (a pack under NODE_ENV=test once recorded src/*.ts: the CLI did not start).
        expect(commands.map((c) => c.relativePath[0])).toEqual(commands.map(() => 'dist'));
      }
      const published = await ok(npm(['publish', filename], out), `npm publish ${dir}`);
      // npm's "auto-corrected some errors in your package.json" (an invalid bin, a bad repository URL).
      expect(published.stderr, `npm publish ${dir}`).not.toMatch(/npm warn publish/i);
    }
    // The monorepo checkout is left as it was: no manifest behind (oclif would trust it over the commands).
    expect(existsSync(join(ROOT, 'packages/cli/oclif.manifest.json'))).toBe(false);
  }, 240_000);

  it('installs the CLI globally from the registry, and it runs', async () => {
    await ok(
      npm(['install', '--global', '--prefix', prefix, 'usepod-agent'], work),
      'npm install -g usepod-agent',
    );
    const v = await ok(sh(agent, ['version'], { cwd: home, env: operatorEnv }), 'usepod-agent version');
    expect(v.stdout).toMatch(/^usepod-agent\/0\.4\.0 core\/0\.4\.0 node\/v20/);
    const help = await ok(sh(agent, ['--help'], { cwd: home, env: operatorEnv }), 'usepod-agent --help');
    expect(help.stdout).toContain('plugins');
    // One core in the whole install: the CLI's, shared by its first-party plugins.
    const cores = await findAll(join(prefix, 'lib/node_modules/usepod-agent'), '@usepod-agent/core');
    expect(cores).toHaveLength(1);
  }, 300_000);

  /** The guide's package (docs/plugins.md, every `file=` block) and the TGI example, each outside the repo. */
  const authors: Record<string, { dir: string; name: string; tests: number }> = {};

  it('builds the guide’s plugin outside the repository from the registry, passes conformance, publishes it', async () => {
    const dir = join(work, 'authors', 'sglang');
    const doc = await readFile(join(ROOT, 'docs/plugins.md'), 'utf8');
    for (const m of doc.matchAll(/```\w+ file=(\S+)\n([\s\S]*?)```/g)) {
      await mkdir(dirname(join(dir, m[1]!)), { recursive: true });
      await writeFile(join(dir, m[1]!), m[2]!);
    }
    authors.sglang = { dir, name: 'usepod-agent-plugin-sglang', tests: 21 };
    await author(authors.sglang);
  }, 300_000);

  it('builds the TGI example outside the repository the same way', async () => {
    const dir = join(work, 'authors', 'tgi');
    const src = join(ROOT, 'examples/custom-backend-plugin');
    for (const f of ['package.json', 'tsconfig.json', 'README.md', 'src']) {
      await cp(join(src, f), join(dir, f), {
        recursive: true,
        filter: (p) => !p.endsWith('.tsbuildinfo'),
      });
    }
    // The example is private in the monorepo (a release never publishes it); its author publishes it.
    const pkgFile = join(dir, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as Record<string, unknown>;
    delete pkg.private;
    await writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    authors.tgi = { dir, name: 'usepod-agent-plugin-tgi', tests: 21 };
    await author(authors.tgi);
  }, 300_000);

  it('installs both by name with `plugins install`, on the agent’s own core, and serves a job through one', async () => {
    for (const a of Object.values(authors)) {
      const r = await ok(
        sh(agent, ['plugins', 'install', a.name], { cwd: home, env: operatorEnv }),
        `plugins install ${a.name}`,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const listed = await ok(sh(agent, ['plugins'], { cwd: home, env: operatorEnv }), 'plugins');
    expect(listed.stdout).toMatch(/usepod-agent-plugin-tgi\s+0\.4\.0\s+kinds: tgi/);
    expect(listed.stdout).toMatch(/usepod-agent-plugin-sglang\s+1\.0\.0\s+kinds: sglang/);
    // The plugins' peer is the agent's core: npm put no second copy beside them.
    const data = join(home, 'data', 'usepod-agent');
    expect(await findAll(data, '@usepod-agent/core')).toEqual([]);

    const { TgiEmulator } = (await import(
      pathToFileURL(join(authors.tgi!.dir, 'src/tgi-emulator.ts')).href
    )) as {
      TgiEmulator: new () => EngineEmulator;
    };
    const engine = await new TgiEmulator().start();
    const coordinator = await TestCoordinator.start();
    const cfg = join(home, 'agent.toml');
    await writeFile(
      cfg,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(home, 'identity.key')}"\n[[backends]]\nkind = "tgi"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
    );
    const child = spawn(agent, ['run', '--config', cfg, '--allow-insecure'], { cwd: home, env: operatorEnv });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const session = await coordinator.firstAuthenticated(30_000);
      const caps = await session.capabilities();
      expect(caps.models).toEqual([
        expect.objectContaining({ model_id: 'HuggingFaceH4/zephyr-7b-beta', backend: 'tgi' }),
      ]);
      expect((await session.dispatch({ model_id: 'HuggingFaceH4/zephyr-7b-beta' }).done()).type).toBe(
        'job_done',
      );
      child.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
      expect(stderr).toMatch(
        /INFO {2}job done job=\w{8} model=HuggingFaceH4\/zephyr-7b-beta via=tgi@[^ ]+ tok=\d+\+\d+ ms=\d+$/m,
      );
    } finally {
      child.kill('SIGKILL');
      await engine.close();
      await coordinator.close();
    }
  }, 300_000);

  it('an integrator’s program, the packages installed from the registry, writes the ledger `earnings` reads', async () => {
    // A project of its own: core, an engine plugin and the default features, installed as any npm user would.
    const project = join(work, 'integrator');
    await mkdir(project, { recursive: true });
    await writeFile(
      join(project, 'package.json'),
      '{ "name": "integrator", "private": true, "type": "module" }\n',
    );
    const pkgs = ['core', 'plugin-vllm', 'plugin-ledger', 'plugin-control'].map(
      (p) => `@usepod-agent/${p}@0.4.0`,
    );
    await ok(npm(['install', '--no-audit', '--no-fund', ...pkgs], project), 'npm install (integrator)');
    await writeFile(
      join(project, 'main.js'),
      `import { createAgent, loadConfig } from '@usepod-agent/core';
const { config } = await loadConfig({ path: process.argv[2], allowInsecure: true });
const agent = createAgent({ config, allowInsecure: true });
await agent.start();
process.once('SIGTERM', () => agent.stop().then(() => process.exit(0)));
`,
    );
    const engine = await new VllmEmulator().start();
    const coordinator = await TestCoordinator.start();
    const keyDir = join(work, 'integrator-id');
    const cfg = join(work, 'integrator.toml');
    await writeFile(
      cfg,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(keyDir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
    );
    const child = spawn(process.execPath, ['main.js', cfg], { cwd: project, env: operatorEnv });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const session = await coordinator.firstAuthenticated(30_000);
      await session.capabilities();
      for (let i = 0; i < 3; i++) {
        expect((await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type, stderr).toBe('job_done');
      }
      // The operator's installed CLI reads what the program wrote, and pauses it over its socket.
      const earnings = await ok(
        sh(agent, ['earnings', '--config', cfg, '--json', '--since', '1h'], { cwd: home, env: operatorEnv }),
        'earnings',
      );
      const rows = (JSON.parse(earnings.stdout) as { rows: { served: number }[] }).rows;
      expect(rows.reduce((n, r) => n + r.served, 0)).toBe(3);
      const paused = session.nextFrame('capabilities');
      await ok(sh(agent, ['pause', '--config', cfg], { cwd: home, env: operatorEnv }), 'pause');
      expect((await paused).models).toEqual([]);
      child.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await engine.close();
      await coordinator.close();
    }
  }, 300_000);

  it('upgrades the install that is running, not the default global prefix', async () => {
    const dry = await ok(
      sh(agent, ['upgrade', '--dry-run'], { cwd: home, env: operatorEnv }),
      'upgrade --dry-run',
    );
    expect(dry.stdout).toContain(`install --global --prefix ${prefix} usepod-agent@latest`);
    expect(dry.stdout).not.toContain('restart');
    const up = await ok(
      sh(agent, ['upgrade', '--version', '0.4.0'], { cwd: home, env: operatorEnv }),
      'upgrade',
    );
    expect(up.stdout).toContain('Now restart the agent');
    expect(existsSync(join(work, 'default-prefix', 'lib/node_modules/usepod-agent'))).toBe(false);
    expect((await ok(sh(agent, ['version'], { cwd: home, env: operatorEnv }), 'version')).stdout).toMatch(
      /^usepod-agent\/0\.4\.0/,
    );
  }, 300_000);
});

/** A plugin author's loop, from a folder of their own: install from the registry, build, test, publish. */
async function author(a: { dir: string; name: string; tests: number }): Promise<void> {
  await ok(npm(['install'], a.dir), `npm install in ${a.name}`);
  // The registry's core, not this checkout's: the copy stands alone.
  expect(existsSync(join(a.dir, 'node_modules/@usepod-agent/core/dist/index.js'))).toBe(true);
  await ok(npm(['run', 'build'], a.dir), `npm run build in ${a.name}`);
  const test = await ok(npm(['test'], a.dir, { ...npmEnv, CI: 'true' }), `npm test in ${a.name}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the runner's colours
  expect(test.out.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(
    new RegExp(`Tests\\s+${a.tests} passed \\(${a.tests}\\)`),
  );
  const published = await ok(npm(['publish'], a.dir), `npm publish ${a.name}`);
  expect(published.stderr).not.toMatch(/npm warn publish/i);
}

/** Every folder named `name` (a scoped `@scope/pkg` too) under node_modules folders below `root`. */
async function findAll(root: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 12) return;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const path = join(dir, e.name);
      if (path.endsWith(`node_modules/${name}`)) found.push(path);
      else await walk(path, depth + 1);
    }
  };
  await walk(root, 0);
  return found;
}
