import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type EngineEmulator, TestCoordinator } from '@usepod-agent/testkit';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Follows docs/plugins.md word for word: every `file=` block becomes a file of a scratch plugin
 * package, which must build, pass the conformance suite, and serve a job through `usepod-agent run`
 * once linked. `npm install` is replaced by a link to this workspace's node_modules (no registry, and
 * the @usepod-agent packages are the ones built here).
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'packages/cli/bin/run.js');
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return new Promise<{ code: number; out: string }>((resolve) =>
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: { ...process.env, ...opts.env }, maxBuffer: 16 * 1024 * 1024 },
      (err, so, se) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: so + se }),
    ),
  );
}

describe('docs/plugins.md', () => {
  it('produces a plugin that passes the conformance suite and that `plugins link` makes usable by run', async () => {
    const doc = await readFile(join(ROOT, 'docs/plugins.md'), 'utf8');
    // The backend's files; the feature plugin's (`battery/...`) are test/feature-guide.test.ts's.
    const files = [...doc.matchAll(/```\w+ file=(\S+)\n([\s\S]*?)```/g)]
      .map((m) => ({ path: m[1]!, text: m[2]! }))
      .filter((f) => !f.path.startsWith('battery/'));
    expect(files.map((f) => f.path)).toEqual([
      'package.json',
      'tsconfig.json',
      'src/index.ts',
      'src/emulator.ts',
      'src/conformance.test.ts',
    ]);
    const dir = await mkdtemp(join(tmpdir(), 'usepod-guide-plugin-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    for (const f of files) {
      await mkdir(dirname(join(dir, f.path)), { recursive: true });
      await writeFile(join(dir, f.path), f.text);
    }
    // npm run build
    const build = await sh(bin('tsc'), ['-p', 'tsconfig.json'], { cwd: dir });
    expect(build.out).toBe('');
    expect(build.code).toBe(0);
    // npm test
    const test = await sh(bin('vitest'), ['run'], { cwd: dir, env: { CI: 'true' } });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the runner's colours
    expect(test.out.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(/Tests\s+21 passed \(21\)/);
    expect(test.code).toBe(0);

    // usepod-agent plugins link . --no-install; plugins; validate; run
    const home = await mkdtemp(join(tmpdir(), 'usepod-guide-'));
    cleanup.push(() => rm(home, { recursive: true, force: true }));
    const env = {
      HOME: home,
      XDG_DATA_HOME: join(home, 'data'),
      XDG_CONFIG_HOME: join(home, 'cfg'),
      XDG_CACHE_HOME: join(home, 'cache'),
      OCLIF_DISABLE_LINKED_ESM_WARNING: '1',
    };
    const cli = (args: string[]) => sh(process.execPath, [BIN, ...args], { cwd: dir, env });
    expect((await cli(['plugins', 'link', '.', '--no-install'])).code).toBe(0);
    expect((await cli(['plugins'])).out).toMatch(/usepod-agent-plugin-sglang\s+1\.0\.0\s+kinds: sglang/);
    const { SglangEmulator } = (await import(pathToFileURL(join(dir, 'src/emulator.ts')).href)) as {
      SglangEmulator: new () => EngineEmulator;
    };
    const engine = await new SglangEmulator().start();
    const coordinator = await TestCoordinator.start();
    cleanup.push(async () => {
      await engine.close();
      await coordinator.close();
    });
    const cfg = join(home, 'agent.toml');
    await writeFile(
      cfg,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(home, 'id.key')}"\n[[backends]]\nkind = "sglang"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
    );
    expect((await cli(['validate', '--config', cfg, '--allow-insecure'])).out).toContain(
      '[usepod-agent-plugin-sglang]',
    );
    const child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], {
      cwd: dir,
      env: { ...process.env, ...env },
    });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      const session = await coordinator.firstAuthenticated(20_000);
      const caps = await session.capabilities();
      expect(caps.models).toEqual([
        expect.objectContaining({
          model_id: 'Qwen/Qwen2.5-7B-Instruct',
          backend: 'sglang',
          context_window: 32768,
        }),
      ]);
      expect((await session.dispatch({ model_id: 'Qwen/Qwen2.5-7B-Instruct' }).done()).type).toBe('job_done');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 120_000);
});
