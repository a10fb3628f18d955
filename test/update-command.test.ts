import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli, homeEnv } from './cli.js';

/**
 * `usepod-agent update` as an operator runs it: what it shows from the side-by-side folder alone (the
 * agent need not run), and the mistakes it names in one line. Installing is the release tier's
 * (test/release/updates.test.ts).
 */
let home: string;
let cfg: string;
let dir: string;
let env: NodeJS.ProcessEnv;

async function config(update = ''): Promise<void> {
  await writeFile(
    cfg,
    `[coordinator]\nurl = "wss://coordinator.invalid/provider/connect"\n[identity]\nkey_path = "${join(home, 'id', 'identity.key')}"\n${update}`,
  );
}

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'usepod-update-cmd-'));
  cfg = join(home, 'agent.toml');
  dir = join(home, 'id', 'update');
  env = homeEnv(home, { USEPOD_CONTAINER: '0' });
  await config();
});

afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('usepod-agent update', () => {
  it('shows the version running, the mode and channel, what is kept and what is bad, in text and --json', async () => {
    await mkdir(join(dir, 'versions', '0.4.0'), { recursive: true });
    await mkdir(join(dir, 'versions', '0.3.9'), { recursive: true });
    await symlink(join('versions', '0.4.0'), join(dir, 'current'));
    await writeFile(
      join(dir, 'launcher.json'),
      JSON.stringify({
        trial: null,
        bad: [
          {
            version: '0.4.2',
            reason: 'exited with code 3 before it was healthy',
            at: '2026-12-07T00:00:00Z',
          },
        ],
      }),
    );
    const text = await cli(['update', '--config', cfg], { env, cwd: home });
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^running {3}0\.4\.0 \(current: 0\.4\.0\)$/m);
    expect(text.stdout).toMatch(/^mode {6}notify \(channel latest\)$/m);
    expect(text.stdout).toMatch(/^kept {6}0\.4\.0, 0\.3\.9$/m);
    expect(text.stdout).toMatch(/^bad {7}0\.4\.2: it exited with code 3 before it was healthy$/m);
    const json = await cli(['update', '--json', '--config', cfg], { env, cwd: home });
    expect(JSON.parse(json.stdout)).toMatchObject({
      mode: 'notify',
      channel: 'latest',
      current: '0.4.0',
      kept: ['0.4.0', '0.3.9'],
      bad: [{ version: '0.4.2' }],
    });
  });

  it('--rollback replaces a FIFO planted at switch.json, never waiting on it', async () => {
    await mkdir(join(dir, 'versions', '0.4.0'), { recursive: true });
    await mkdir(join(dir, 'versions', '0.3.9'), { recursive: true });
    await symlink(join('versions', '0.4.0'), join(dir, 'current'));
    await symlink(join('versions', '0.3.9'), join(dir, 'previous'));
    // No launcher reads it: a write into it waited for good.
    expect(spawnSync('mkfifo', [join(dir, 'switch.json')]).status).toBe(0);
    const r = await cli(['update', '--rollback', '--config', cfg], { env, cwd: home });
    expect(r.code, r.stderr).toBe(0);
    expect((await lstat(join(dir, 'switch.json'))).isFile()).toBe(true);
    expect(JSON.parse(await readFile(join(dir, 'switch.json'), 'utf8'))).toMatchObject({ version: '0.3.9' });
  });

  it('a garbled state folder reads as empty, never as a crash', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'launcher.json'), '{"bad": [{"version": "../../x"}], "trial": 5');
    await writeFile(join(dir, 'update-state.json'), 'x'.repeat(100_000));
    const r = await cli(['update', '--json', '--config', cfg], { env, cwd: home });
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(v).toMatchObject({ bad: [], kept: [] });
    expect(v.trial).toBeUndefined();
  });

  it('names each mistake in one line, exit 2: two actions, a bad [update] value, nothing to roll back to', async () => {
    const both = await cli(['update', '--check', '--now', '--config', cfg], { env, cwd: home });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--check and --now cannot be used together');
    expect(both.stderr).not.toMatch(/\n\s+at /);
    await config('[update]\nhealth_timeout = "soon"\n');
    const bad = await cli(['update', '--config', cfg], { env, cwd: home });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('health_timeout');
    expect(bad.stderr).toContain('"soon" is not a duration');
    await config();
    const none = await cli(['update', '--rollback', '--config', cfg], { env, cwd: home });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(`no previous version is kept in ${dir}`);
  });
});
