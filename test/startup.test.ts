import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, homeEnv, scratch } from './cli.js';
import { hello } from './helpers.js';

/**
 * Start-up of the CLI (issue 30): the checkout answers from an oclif manifest as the package does, so
 * `--help` imports no command, and a manifest older than the build is remade before it is trusted
 * (oclif believes a manifest over the commands on disk). Speed itself is measured by bench/, not here.
 */
const CLI_DIR = fileURLToPath(new URL('../packages/cli/', import.meta.url));
const MANIFEST = join(CLI_DIR, 'oclif.manifest.json');
const BUILD_INFO = join(CLI_DIR, 'dist/.tsbuildinfo');

/** Scratch folders of this file's runs, removed once it is done (a full run made about 130 of them). */
const scratchDirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], execArgv: string[] = []): Promise<{ code: number; stdout: string }> {
  const dir = tempDir('usepod-startup-');
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [...execArgv, BIN, ...args],
      { env: homeEnv(dir), cwd: dir, timeout: 60_000 },
      (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }),
    ),
  );
}

/**
 * A `--import` that records every module a CLI run loads: ES modules through Node's own loader hooks,
 * CommonJS ones (what a package's `require()` loads, which those hooks do not see) through Module._load.
 */
function recorder(): { execArgv: string[]; loaded(): string[] } {
  const dir = tempDir('usepod-startup-hooks-');
  const log = join(dir, 'loaded.txt');
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(log)}, url + '\\n');\n  return next(url, context);\n}\n`,
  );
  writeFileSync(
    join(dir, 'register.mjs'),
    [
      `import { appendFileSync } from 'node:fs';`,
      `import Module, { register } from 'node:module';`,
      `register(${JSON.stringify(`file://${join(dir, 'hooks.mjs')}`)});`,
      'const load = Module._load;',
      'Module._load = function (request, parent, ...rest) {',
      `  try { appendFileSync(${JSON.stringify(log)}, 'file://' + Module._resolveFilename(request, parent) + '\\n'); } catch {}`,
      '  return load.call(this, request, parent, ...rest);',
      '};',
      '',
    ].join('\n'),
  );
  return {
    execArgv: ['--import', join(dir, 'register.mjs')],
    loaded: () => readFileSync(log, 'utf8').split('\n'),
  };
}

/** A CLI run to its end with every module it loads recorded. */
async function recording(args: string[]) {
  const rec = recorder();
  const res = await run(args, rec.execArgv);
  return { res, loaded: rec.loaded() };
}

describe('CLI start-up', () => {
  it('remakes a manifest older than the build before trusting it', async () => {
    // A stale manifest, as an earlier build would have left it: without the `version` command.
    await run(['--help']);
    const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8')) as { commands: Record<string, unknown> };
    expect(manifest.commands.version).toBeDefined();
    delete manifest.commands.version;
    writeFileSync(MANIFEST, JSON.stringify(manifest));
    const built = statSync(BUILD_INFO).mtime;
    utimesSync(MANIFEST, new Date(built.getTime() - 60_000), new Date(built.getTime() - 60_000));

    const res = await run(['version']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^usepod-agent\/\S+ core\/\S+ node\//);
    const remade = JSON.parse(readFileSync(MANIFEST, 'utf8')) as { commands: Record<string, unknown> };
    expect(remade.commands.version).toBeDefined();
  });

  it('reads agent.toml without cosmiconfig (its JSON and YAML parsers: ~20 modules `run` does not need)', async () => {
    const dir = tempDir('usepod-startup-toml-');
    const toml = join(dir, 'agent.toml');
    writeFileSync(
      toml,
      '[coordinator]\nurl = "wss://coord.example"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n',
    );
    const { res, loaded } = await recording(['validate', '--config', toml]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`ok: ${toml}`);
    expect(loaded.filter((u) => u.includes('/packages/core/'))).not.toEqual([]);
    expect(loaded.filter((u) => u.includes('/cosmiconfig/'))).toEqual([]);
  });

  it.each([
    ['a fresh manifest', false],
    ['a manifest older than the build, remade in a process of its own', true],
  ])('answers --help from %s, importing no command and not the agent', async (_, stale) => {
    await run(['--help']);
    if (stale) {
      // Remade in this process, every command (~450 modules) stayed loaded in an agent's `run` for good.
      const built = statSync(BUILD_INFO).mtime;
      utimesSync(MANIFEST, new Date(built.getTime() - 60_000), new Date(built.getTime() - 60_000));
    }
    const { res, loaded } = await recording(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('COMMANDS');
    expect(loaded.filter((u) => u.includes('/packages/cli/dist/commands/'))).toEqual([]);
    expect(loaded.filter((u) => u.includes('/packages/core/'))).toEqual([]);
    // oclif's parts from their subpaths: not its index, which loads all of it and a copy of semver.
    expect(loaded.filter((u) => /\/@oclif\/core\/lib\/index\.js$|\/semver\/index\.js$/.test(u))).toEqual([]);
    expect(statSync(MANIFEST).mtimeMs).toBeGreaterThan(statSync(BUILD_INFO).mtimeMs);
  });

  it('runs the agent and relays a job without undici, nor the indexes of semver, oclif, prom-client and tapable (~210 modules `run` never calls)', async () => {
    const s = await scratch('usepod-startup-run-');
    try {
      const cfg = join(s.dir, 'agent.toml');
      writeFileSync(
        cfg,
        `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${join(s.dir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n`,
      );
      const rec = recorder();
      const child = spawn(
        process.execPath,
        [...rec.execArgv, BIN, 'run', '--config', cfg, '--allow-insecure'],
        {
          env: homeEnv(s.dir),
          cwd: s.dir,
          stdio: 'ignore',
        },
      );
      s.children.push(child);
      const session = await s.coordinator.nextAuthenticated(20_000);
      await session.capabilities();
      // The engine client is Node's own (`node:http`): a job streams through it.
      const job = session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
      expect((await job.done()).type).toBe('job_done');
      expect(job.text()).toContain('data:');

      const loaded = rec.loaded();
      // No module of undici: its 31 and llhttp's WebAssembly, whose compilation left ~10 MB resident
      // (decision 0008, ninth pass).
      expect(loaded.some((u) => u.endsWith('/packages/core/dist/backend/engine-pool.js'))).toBe(true);
      expect(loaded.filter((u) => u.includes('/node_modules/undici/'))).toEqual([]);
      // Neither copy of semver's index: ours, nor oclif's, which only oclif's own index requires (a Node
      // version check); the CLI takes oclif's parts from their subpaths (`@oclif/core/command`, ...).
      expect(loaded.filter((u) => u.endsWith('/semver/index.js'))).toEqual([]);
      expect(loaded.filter((u) => u.endsWith('/@oclif/core/lib/index.js'))).toEqual([]);
      // prom-client's Summary, Pushgateway and cluster aggregator; tapable's eight other hook kinds.
      expect(loaded.some((u) => u.endsWith('/prom-client/lib/registry.js'))).toBe(true);
      expect(
        loaded.filter((u) => /\/prom-client\/(index|lib\/(summary|pushgateway|cluster))\.js$/.test(u)),
      ).toEqual([]);
      expect(loaded.some((u) => u.endsWith('/tapable/lib/SyncHook.js'))).toBe(true);
      expect(loaded.filter((u) => /\/tapable\/lib\/(index|HookMap|SyncLoopHook)\.js$/.test(u))).toEqual([]);
      // csv-stringify is for `earnings --csv` only.
      expect(loaded.filter((u) => u.includes('/csv-stringify/'))).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
