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
    const dir = mkdtempSync(join(tmpdir(), 'usepod-startup-hooks-'));
    const log = join(dir, 'loaded.txt');
    // Records every module the process loads, through Node's own loader hooks.
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(log)}, url + '\\n');\n  return next(url, context);\n}\n`,
    );
    writeFileSync(
      join(dir, 'register.mjs'),
      `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${join(dir, 'hooks.mjs')}`)});\n`,
    );
    const res = await run(['--help'], ['--import', join(dir, 'register.mjs')]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('COMMANDS');
    const loaded = readFileSync(log, 'utf8').split('\n');
    expect(loaded.filter((u) => u.includes('/packages/cli/dist/commands/'))).toEqual([]);
    expect(loaded.filter((u) => u.includes('/packages/core/'))).toEqual([]);
    expect(statSync(MANIFEST).mtimeMs).toBeGreaterThan(statSync(BUILD_INFO).mtimeMs);
  });
});
