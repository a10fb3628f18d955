import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LINUX,
  launchdPlist,
  planService,
  type ServiceOptions,
  type Step,
  systemdUnit,
  unsafePath,
  winArg,
} from '../packages/cli/src/service/plan.js';
import { RealRunner } from '../packages/cli/src/service/runner.js';
import { cli, homeEnv } from './cli.js';

/**
 * `service install|uninstall|status` as a careless or hostile input sees it: a path, a config value, a
 * link planted by the service user (a compromised agent) in the folder it owns. Each test failed before
 * the fix named in its row; what already held is in the report of this pass, not here.
 *
 * | input                                                        | before                                               | now                                                   |
 * | ------------------------------------------------------------ | ---------------------------------------------------- | ----------------------------------------------------- |
 * | `update` in the state folder linked to a root folder         | `install -d -o usepod` as root gave it to usepod     | set up as the service user: the link leads nowhere    |
 * | `.local` (plugins) in the state folder linked elsewhere      | root made folders and copied through it              | unpacked as the service user: refused by the kernel   |
 * | `[update] dir = "/usr/local"` (Linux)                        | chowned to usepod, mode 0700, as root                | refused in one line: must be in /var/lib/usepod-agent |
 * | /etc/usepod-agent/agent.toml a link (to the operator's file) | written through, then chowned to usepod              | the link is replaced by the file                      |
 * | node at a path with `$`                                      | ExecStart named `$$`: the unit never started         | `$` kept in the executable, doubled in arguments      |
 * | node at a path with `"`, `'` or `\`                          | a unit systemd refuses                               | refused in one line                                   |
 * | Windows key_path with `&` (`C:\Users\R&D\...`)               | `cmd.exe /c copy`: cmd.exe ran what follows `&`      | copied by the CLI itself                              |
 * | Windows `[update] dir` ending in `\`, or holding `"`         | `"...\"` ate the next arguments of binPath           | quoted by the C runtime's rules                       |
 * | Windows path with `%` on binPath                             | expanded by the service manager (REG_EXPAND_SZ)      | refused in one line                                   |
 * | `service install --dry-run` of a config with the enrollment code | the code printed (CI logs, tickets)              | a file only its owner may read is not printed         |
 * | `service uninstall --config broken.toml`                     | refused: the config did not parse                    | the config is not read by anything but install        |
 * | `drain_timeout_s = 2.5`                                      | `<integer>17.5</integer>`: not a plist integer       | whole seconds, rounded up                             |
 */

const base: ServiceOptions = {
  platform: 'linux',
  nodePath: '/usr/bin/node',
  cliPath: '/usr/lib/node_modules/usepod-agent/bin/run.js',
  configPath: '/home/op/agent.toml',
  serviceConfigToml: '[identity]\nkey_path = "/var/lib/usepod-agent/identity.key"\n',
  identityPath: '/home/op/.usepod-agent/identity.key',
  drainTimeoutS: 30,
};
const update = {
  dir: '/var/lib/usepod-agent/update',
  version: '0.4.0',
  launcherSource: '/usr/lib/node_modules/usepod-agent/launcher.mjs',
  npm: '/usr/bin/npm',
};
const BACKEND = '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n';

let dir: string;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-svc-'));
  // The service user of the scratch root (nobody) must reach its folder in it.
  await chmod(dir, 0o755);
  env = homeEnv(join(dir, 'home'), { OCLIF_DISABLE_LINKED_ESM_WARNING: '1', USEPOD_CONTAINER: '0' });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

const asRoot = process.getuid?.() === 0 && spawnSync('runuser', ['--version']).status === 0;

describe('the Linux steps that write into the state folder, run as root in a scratch root', () => {
  /** A plan step with the state folder moved into `root` and the service user played by nobody. */
  function scratch(step: Step, root: string): Step {
    const group = execFileSync('id', ['-gn', 'nobody'], { encoding: 'utf8' }).trim();
    // `-g usepod` (install) names the group; `usepod` elsewhere (runuser -u, install -o) the user.
    const move = (a: string, i: number, all: string[]) =>
      a === LINUX.user
        ? all[i - 1] === '-g'
          ? group
          : 'nobody'
        : a === `${LINUX.user}:${LINUX.user}`
          ? `nobody:${group}`
          : a.replaceAll(LINUX.stateDir, root);
    if (step.kind !== 'run') return step;
    const moved = { ...step, args: step.args.map(move) };
    if (step.input) moved.input = { cmd: step.input.cmd, args: step.input.args.map(move) };
    return moved;
  }

  async function setUp(name: string) {
    const root = join(dir, name);
    const state = join(root, 'state');
    const op = join(root, 'op');
    await mkdir(join(op, 'plugins', 'node_modules', 'usepod-agent-plugin-x'), { recursive: true });
    await writeFile(join(op, 'plugins', 'node_modules', 'usepod-agent-plugin-x', 'index.js'), 'export {}\n');
    await writeFile(join(op, 'identity.key'), 'KEY\n', { mode: 0o600 });
    await writeFile(join(op, 'launcher.mjs'), '// launcher\n');
    await chmod(op, 0o755);
    await mkdir(state, { mode: 0o700 });
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
    const nogroup = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }));
    await chown(state, nobody, nogroup);
    // What root owns and the service user must never be given or written into.
    const victim = join(root, 'victim');
    await mkdir(victim, { mode: 0o755 });
    await writeFile(join(victim, 'file'), 'root only\n', { mode: 0o600 });
    const plan = planService('install', {
      ...base,
      identityPath: join(op, 'identity.key'),
      pluginRoot: join(op, 'plugins'),
      update: { ...update, launcherSource: join(op, 'launcher.mjs') },
    });
    // Those that touch the state folder, but npm (the network) and useradd (sh -c: this machine's users).
    const steps = plan
      .filter(
        (s) =>
          s.kind === 'run' && s.cmd !== 'sh' && !s.interactive && JSON.stringify(s).includes(LINUX.stateDir),
      )
      .map((s) => scratch(s, state));
    return { root, state, victim, steps, nobody, op };
  }

  async function apply(steps: Step[]): Promise<number[]> {
    const runner = new RealRunner();
    const codes: number[] = [];
    for (const step of steps) codes.push(await runner.apply(step));
    return codes;
  }

  it.skipIf(!asRoot)('set up the key, the plugins and the update folder as the service user', async () => {
    const { state, steps, nobody } = await setUp('clean');
    // `ln` then `mv` expect the versions folder npm would have filled.
    expect(await apply(steps)).toEqual(steps.map(() => 0));
    const key = await stat(join(state, 'identity.key'));
    expect([key.uid, key.mode & 0o777]).toEqual([nobody, 0o600]);
    expect(await readFile(join(state, 'identity.key'), 'utf8')).toBe('KEY\n');
    const plugin = join(state, '.local/share/usepod-agent/node_modules/usepod-agent-plugin-x/index.js');
    expect((await stat(plugin)).uid).toBe(nobody);
    expect((await stat(join(state, 'update', 'launcher.mjs'))).uid).toBe(nobody);
    expect((await lstat(join(state, 'update', 'current'))).isSymbolicLink()).toBe(true);
  });

  it.skipIf(!asRoot)('links the service user planted in its folder lead nowhere root owns', async () => {
    const { state, victim, steps } = await setUp('planted');
    await symlink(victim, join(state, 'update'));
    await symlink(victim, join(state, '.local'));
    await symlink(join(victim, 'file'), join(state, 'identity.key'));
    // Steps through a link into root's folder fail (as the service user); nothing of root's changes.
    await apply(steps);
    const after = await stat(victim);
    expect([after.uid, after.mode & 0o777]).toEqual([0, 0o755]);
    expect(await readdir(victim)).toEqual(['file']);
    expect(await readFile(join(victim, 'file'), 'utf8')).toBe('root only\n');
    expect((await stat(join(victim, 'file'))).uid).toBe(0);
  });
});

describe('refused in one line, before anything is planned', () => {
  it('[update] dir outside the state folder (Linux): root gave it to the service user', async () => {
    for (const where of ['/usr/local', '/var/lib/usepod-agent/../../../etc', 'update']) {
      const cfg = await config(
        'outside.toml',
        `${BACKEND}[update]\nmode = "auto"\ndir = ${JSON.stringify(where)}\n`,
      );
      const out = await cli(['service', 'install', '--dry-run', '--config', cfg, '--platform', 'linux'], {
        env,
        cwd: dir,
      });
      expect(out.code, out.stdout).toBe(2);
      expect(out.stderr.split('\n')[0]).toBe(
        `usepod-agent: [update] dir in ${cfg}: ${JSON.stringify(where)} is not inside /var/lib/usepod-agent/, the only folder the service may write; remove it (the default is /var/lib/usepod-agent/update) or put it under /var/lib/usepod-agent/, then run service install again (USEPOD_USAGE)`,
      );
      expect(out.stdout).not.toContain('would run');
    }
    // Inside it, the plan runs every step there as the service user.
    const inside = await config(
      'inside.toml',
      `${BACKEND}[update]\nmode = "auto"\ndir = "/var/lib/usepod-agent/up"\n`,
    );
    const ok = await cli(['service', 'install', '--dry-run', '--config', inside, '--platform', 'linux'], {
      env,
      cwd: dir,
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('would run runuser -u usepod -- install -d -m 0700 /var/lib/usepod-agent/up');
    expect(ok.stdout).not.toMatch(/would run (install|chown|cp) .*\/var\/lib\/usepod-agent\/\S/);
  });

  it('Windows: a % on binPath, which the service manager would expand', async () => {
    const cfg = await config(
      'percent.toml',
      `${BACKEND}[update]\nmode = "auto"\ndir = 'C:\\%TEMP%\\update'\n`,
    );
    const out = await cli(['service', 'install', '--dry-run', '--config', cfg, '--platform', 'win32'], {
      env,
      cwd: dir,
    });
    expect(out.code).toBe(2);
    expect(out.stderr.split('\n')[0]).toBe(
      `usepod-agent: [update] dir in ${cfg}: "C:\\\\%TEMP%\\\\update" has a %, which the Windows service manager would read as the start of a %VARIABLE%; point it at a plain path, or remove it (USEPOD_USAGE)`,
    );
  });

  it('what no service definition can hold, per platform', () => {
    const linux = { platform: 'linux' as const };
    // systemd refuses these in the executable's path (systemd-analyze: "special characters").
    for (const node of ['/opt/a"b/node', "/opt/a'b/node", '/opt/a\\b/node'])
      expect(unsafePath(node, { ...linux, executable: true })).toMatch(/quote or a backslash, which systemd/);
    expect(unsafePath("/opt/a'b/run.js", linux)).toBeUndefined();
    // Not XML: a plist holding it does not load.
    expect(unsafePath('/Users/op/a\ufffeb', { platform: 'darwin' })).toMatch(/control character/);
    expect(unsafePath('C:\\a%b', { platform: 'win32', commandLine: true })).toMatch(/%VARIABLE%/);
    expect(unsafePath('/opt/100%/run.js', { ...linux, commandLine: true })).toBeUndefined();
  });
});

describe('rendered as each format reads it back', () => {
  it("systemd: a `$` in node's path is literal (systemd expands none there), doubled in arguments", async () => {
    const unit = systemdUnit({ ...base, nodePath: '/opt/n$de/bin/node', cliPath: '/opt/a$b/run.js' });
    expect(unit).toContain('\nExecStart=/opt/n$de/bin/node /opt/a$$b/run.js run --config');
    // systemd itself, where it is installed: the executable it finds is the one named.
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) return;
    const folder = join(dir, 'n$de % é;x');
    await mkdir(folder, { recursive: true });
    const node = join(folder, 'node');
    await writeFile(node, '#!/bin/sh\n', { mode: 0o755 });
    const path = join(dir, 'usepod-agent.service');
    await writeFile(path, systemdUnit({ ...base, nodePath: node }));
    const verify = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
    expect(verify.stderr).not.toMatch(/not executable|special characters|Unbalanced|Invalid/);
  });

  it('Windows binPath: quotes and trailing backslashes by the C runtime rules', () => {
    expect(winArg('C:\\ProgramData\\usepod-agent\\update\\')).toBe(
      '"C:\\ProgramData\\usepod-agent\\update\\\\"',
    );
    expect(winArg('C:\\a b\\c')).toBe('"C:\\a b\\c"');
    expect(winArg('a"b')).toBe('"a\\"b"');
    expect(winArg('a\\"b')).toBe('"a\\\\\\"b"');
    expect(winArg('run')).toBe('run');
    const win = planService('install', {
      ...base,
      platform: 'win32',
      nodePath: 'C:\\Program Files\\nodejs\\node.exe',
      update: { ...update, dir: 'C:\\usepod\\update\\' },
    });
    const create = win.find((s) => s.kind === 'run' && s.args[0] === 'create');
    expect(create?.kind === 'run' && create.args[3]).toContain(
      '--dir "C:\\usepod\\update\\\\" -- run --config "C:\\ProgramData\\usepod-agent\\agent.toml"',
    );
  });

  it('a stop timeout in whole seconds, for the plist integer and the unit', () => {
    expect(launchdPlist({ ...base, platform: 'darwin', drainTimeoutS: 2.5 })).toContain(
      '<key>ExitTimeOut</key>\n  <integer>18</integer>',
    );
    expect(systemdUnit({ ...base, drainTimeoutS: 2.5 })).toContain('\nTimeoutStopSec=18\n');
  });
});

describe('files root writes, and what it prints', () => {
  it('Windows: the key is copied by the CLI, not through cmd.exe, and a link at the target is replaced', async () => {
    const from = join(dir, 'R&D calc', 'identity.key');
    await mkdir(join(dir, 'R&D calc'), { recursive: true });
    await writeFile(from, 'KEY\n', { mode: 0o600 });
    const steps = planService('install', { ...base, platform: 'win32', identityPath: from });
    expect(steps.some((s) => s.kind === 'run' && s.cmd === 'cmd.exe' && s.args.includes(from))).toBe(false);
    const copy = steps.find((s) => s.kind === 'copy');
    expect(copy).toMatchObject({ from, path: 'C:\\ProgramData\\usepod-agent\\identity.key' });
    // Carried out here into a scratch folder where someone planted a link at the target.
    const target = join(dir, 'win-key');
    const elsewhere = join(dir, 'elsewhere');
    await writeFile(elsewhere, 'theirs\n');
    await symlink(elsewhere, target);
    await new RealRunner().apply({ ...(copy as Step & { kind: 'copy' }), path: target });
    expect(await readFile(target, 'utf8')).toBe('KEY\n');
    expect((await lstat(target)).isSymbolicLink()).toBe(false);
    expect(await readFile(elsewhere, 'utf8')).toBe('theirs\n');
  });

  it('a link where the config or the unit goes is replaced, never written through (then chowned)', async () => {
    const operators = join(dir, 'operator-agent.toml');
    await writeFile(operators, '# the operator file\n', { mode: 0o644 });
    const at = join(dir, 'etc-agent.toml');
    await symlink(operators, at);
    await new RealRunner().apply({ kind: 'write', path: at, content: 'service\n', mode: 0o600, why: 'test' });
    expect(await readFile(operators, 'utf8')).toBe('# the operator file\n');
    expect((await lstat(at)).isSymbolicLink()).toBe(false);
    expect([(await stat(at)).mode & 0o777, await readFile(at, 'utf8')]).toEqual([0o600, 'service\n']);
  });

  it('--dry-run does not print a file only its owner may read (the enrollment code)', async () => {
    const cfg = await config('enroll.toml', `[coordinator]\nenrollment_code = "ENROLL-S3CRET"\n${BACKEND}`);
    const out = await cli(['service', 'install', '--dry-run', '--config', cfg, '--platform', 'linux'], {
      env,
      cwd: dir,
    });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).not.toContain('S3CRET');
    expect(out.stdout).toMatch(
      /would write \/etc\/usepod-agent\/agent\.toml \(mode 0600\).*\n {4}\| \(\d+ characters, not shown: only its owner may read it\)\n/,
    );
    // The unit (0644, no secret) is still shown whole.
    expect(out.stdout).toContain('    | ExecStart=');
  });

  it('uninstall and status never read the config: a broken one does not stand in the way', async () => {
    const broken = await config('broken.toml', 'garbage = [\n');
    const out = await cli(['service', 'uninstall', '--dry-run', '--config', broken, '--platform', 'linux'], {
      env,
      cwd: dir,
    });
    // Not installed on this machine (3), not "the config does not parse" (2).
    expect(existsSync('/etc/systemd/system/usepod-agent.service')).toBe(false);
    expect([out.code, out.stderr.trim()]).toEqual([
      3,
      'usepod-agent: the service is not installed (no /etc/systemd/system/usepod-agent.service); run `usepod-agent service install`',
    ]);
  });
});
