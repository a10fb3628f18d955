import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BIN, homeEnv } from './cli.js';

/**
 * Start-up of the CLI (issue 30): the checkout answers from an oclif manifest as the package does, so
 * `--help` imports no command, and a manifest older than the build is remade before it is trusted
 * (oclif believes a manifest over the commands on disk). Speed itself is measured by bench/, not here.
 */
const CLI_DIR = fileURLToPath(new URL('../packages/cli/', import.meta.url));
const MANIFEST = join(CLI_DIR, 'oclif.manifest.json');
const BUILD_INFO = join(CLI_DIR, 'dist/.tsbuildinfo');

function run(args: string[], execArgv: string[] = []): Promise<{ code: number; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'usepod-startup-'));
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [...execArgv, BIN, ...args],
      { env: homeEnv(dir), cwd: dir, timeout: 60_000 },
      (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }),
    ),
  );
}

/** A CLI run with every ES module it loads recorded, through Node's own loader hooks. */
async function recording(args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'usepod-startup-hooks-'));
  const log = join(dir, 'loaded.txt');
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(log)}, url + '\\n');\n  return next(url, context);\n}\n`,
  );
  writeFileSync(
    join(dir, 'register.mjs'),
    `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${join(dir, 'hooks.mjs')}`)});\n`,
  );
  const res = await run(args, ['--import', join(dir, 'register.mjs')]);
  return { res, loaded: readFileSync(log, 'utf8').split('\n') };
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
    const dir = mkdtempSync(join(tmpdir(), 'usepod-startup-toml-'));
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
    expect(statSync(MANIFEST).mtimeMs).toBeGreaterThan(statSync(BUILD_INFO).mtimeMs);
  });
});
