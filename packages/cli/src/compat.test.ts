import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@usepod-agent/core';
import { findConfigFile, readLogLevel } from '@usepod-agent/core/cli';
import { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { normalizeArgv } from './argv.js';

/** The command lines, config places and log levels of 0.3.x (PROTOCOL.md 8 and 8a), on a real process. */
const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
let dir: string;
let env: NodeJS.ProcessEnv;
const stop: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-compat-'));
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_DATA_HOME: join(dir, 'data'),
  };
});
afterEach(async () => {
  for (const s of stop.splice(0).reverse()) await s();
  await rm(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function agentToml(
  path: string,
  coordinator: TestCoordinator,
  engine: VllmEmulator,
  extra = '',
): Promise<void> {
  await writeFile(
    path,
    `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n${extra}`,
  );
}

/** Starts the CLI and serves one job through it; resolves with its stderr once it exited on SIGTERM. */
async function serveOnce(args: string[], coordinator: TestCoordinator): Promise<string> {
  const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { env, cwd: dir });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  stop.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  const session = await coordinator.nextAuthenticated(15_000);
  await session.capabilities();
  expect((await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  return stderr;
}

describe('0.3.x command lines (PROTOCOL.md 8a)', () => {
  it('moves global flags given before the command behind it, and runs the agent when no command is given', () => {
    expect(normalizeArgv([])).toEqual(['run']);
    expect(normalizeArgv(['--config', 'a.toml'])).toEqual(['run', '--config', 'a.toml']);
    expect(normalizeArgv(['-c', 'a.toml', '--allow-insecure', '--log-level', 'trace'])).toEqual([
      'run',
      '-c',
      'a.toml',
      '--allow-insecure',
      '--log-level',
      'trace',
    ]);
    expect(normalizeArgv(['--config', 'X', 'service', 'install', '--dry-run'])).toEqual([
      'service',
      'install',
      '--dry-run',
      '--config',
      'X',
    ]);
    expect(normalizeArgv(['--config=X', 'validate', '--', 'arg'])).toEqual([
      'validate',
      '--config=X',
      '--',
      'arg',
    ]);
    expect(normalizeArgv(['--help'])).toEqual(['--help']);
    expect(normalizeArgv(['--version'])).toEqual(['--version']);
  });

  it('`usepod-agent` alone runs the agent from the platform config; global flags work before the command', async () => {
    const coordinator = await TestCoordinator.start();
    const engine = await new VllmEmulator().start();
    stop.push(async () => {
      await engine.close();
      await coordinator.close();
    });
    await mkdir(join(dir, 'xdg', 'usepod-agent'), { recursive: true });
    await agentToml(join(dir, 'xdg', 'usepod-agent', 'agent.toml'), coordinator, engine);
    // `ws://` needs --allow-insecure, given alone: no command, no --config.
    expect(await serveOnce(['--allow-insecure'], coordinator)).toMatch(/agent started/);
    const other = join(dir, 'other.toml');
    await agentToml(other, coordinator, engine);
    const stderr = await serveOnce(
      ['-c', other, '--log-level', 'trace', '--allow-insecure', 'run'],
      coordinator,
    );
    // trace (a 0.3.x tracing level) is read as debug.
    expect(stderr).toMatch(/DEBUG/);
    // A global flag before the command reaches it too; the ws:// coordinator is carried into the unit.
    const dry = await cli([
      '--config',
      other,
      '--allow-insecure',
      'service',
      'install',
      '--dry-run',
      '--platform',
      'linux',
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('would write /etc/systemd/system/usepod-agent.service');
    expect(dry.stdout).toMatch(
      /ExecStart=.* run --config \/etc\/usepod-agent\/agent\.toml.* --allow-insecure/,
    );
  }, 40_000);

  it('with no config anywhere, says where it looked and to run setup, in one line', async () => {
    const out = await cli([]);
    expect(out.code).toBe(2);
    const [line, hint, ...rest] = out.stderr.trimEnd().split('\n');
    expect(line).toMatch(/\(USEPOD_CONFIG_NOT_FOUND\)$/);
    expect(hint).toMatch(/^ {2}hint: /);
    expect(rest).toEqual([]);
    expect(out.stderr).toContain(join(dir, 'xdg', 'usepod-agent', 'agent.toml'));
    expect(out.stderr).toContain('./agent.toml');
    expect(out.stderr).toContain('usepod-agent setup');
  });
});

describe('0.3.x config places and values (PROTOCOL.md 8)', () => {
  it('finds a config that 0.3.x setup wrote in the macOS or Windows folder', async () => {
    const mac = join(dir, 'Library', 'Application Support', 'ai.usepod.usepod-agent');
    await mkdir(mac, { recursive: true });
    await writeFile(join(mac, 'agent.toml'), '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n');
    expect(await findConfigFile(dir, { platform: 'darwin', home: dir, env: {} })).toBe(
      join(mac, 'agent.toml'),
    );
    // Windows: %APPDATA%\usepod\usepod-agent\config.
    const appData = join(dir, 'AppData');
    const win = join(appData, 'usepod', 'usepod-agent', 'config');
    await mkdir(win, { recursive: true });
    await writeFile(join(win, 'agent.toml'), '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n');
    const found = await findConfigFile(dir, { platform: 'win32', home: dir, env: { APPDATA: appData } });
    expect(found).toBe(join(win, 'agent.toml'));
    // Nothing there: nothing found (the current folder has no agent.toml either).
    expect(
      await findConfigFile(dir, { platform: 'darwin', home: join(dir, 'nobody'), env: {} }),
    ).toBeUndefined();
  });

  it('loads any log_level 0.3.x accepted, mapped to the nearest level, with one warning', async () => {
    for (const [value, level] of [
      ['trace', 'debug'],
      ['usepod_agent=debug', 'debug'],
      ['warn,usepod_agent=error', 'error'],
      ['hyper=info,tower=warn', 'info'],
      ['WARNING', 'warn'],
      ['loud', 'info'],
      ['info', 'info'],
    ] as const) {
      expect(readLogLevel(value).level, value).toBe(level);
      const file = join(dir, 'levels.toml');
      await writeFile(
        file,
        `[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n[observability]\nlog_level = "${value}"\n`,
      );
      const { config, warnings } = await loadConfig({ path: file });
      expect(config.observability.log_level).toBe(level);
      expect(warnings.filter((w) => w.includes('log level'))).toHaveLength(value === 'info' ? 0 : 1);
    }
  });
});
