import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAUNCHER_SOURCE, pointLink, setup } from './setup.js';
import { readLauncher } from './state.js';

/**
 * The launcher's state machine with stand-in agents: each version folder holds a small run.js (what the
 * real CLI's bin is) that behaves as the test says: healthy, exits at start, fails its self-test, hangs.
 */
const AGENT = (behaviour: string) => `
const { writeFileSync, renameSync, appendFileSync } = require('node:fs');
const { join } = require('node:path');
const dir = process.env.USEPOD_UPDATE_DIR;
const trial = process.env.USEPOD_UPDATE_TRIAL;
const me = __dirname.split('/').at(-4);
// flags.log before started.log: the test reads flags.log once started.log names this process.
appendFileSync(join(dir, 'flags.log'), me + ' ' + JSON.stringify(process.execArgv) + '\\n');
appendFileSync(join(dir, 'started.log'), me + ' ' + process.pid + ' ' + (trial || '-') + ' ' + process.argv.slice(2).join(' ') + '\\n');
const report = (h) => { writeFileSync(join(dir, 'h.tmp'), JSON.stringify({ version: trial, pid: process.pid, ...h })); renameSync(join(dir, 'h.tmp'), join(dir, 'health.json')); };
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1000);
const behaviour = ${JSON.stringify(behaviour)};
if (behaviour === 'exit') process.exit(3);
if (behaviour === 'crash-once' && !require('node:fs').existsSync(join(dir, 'crashed'))) { writeFileSync(join(dir, 'crashed'), ''); process.exit(1); }
if (trial && behaviour === 'good') report({ authenticated: true, advertised: ['m1', 'm2'], selftests: { m1: 'pass', m2: 'pass' } });
if (trial && behaviour === 'selftest-fails') report({ authenticated: true, advertised: ['m1'], selftests: { m1: 'fail' } });
if (trial && behaviour === 'refused') report({ authenticated: false, refused: 'unknown provider', advertised: [], selftests: {} });
`;

let dir: string;
let launcher: ChildProcess | undefined;
let log = '';

async function version(v: string, behaviour: string, pkg: object = {}): Promise<void> {
  const bin = join(dir, 'versions', v, 'node_modules', 'usepod-agent', 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'run.js'), AGENT(behaviour));
  await writeFile(join(bin, '..', 'package.json'), JSON.stringify({ type: 'commonjs', ...pkg }));
}

/**
 * Starts the launcher, under `wrap` when given (a tracer: its command and arguments before node's), with
 * `nodeArgs` given to its node (a module imported first).
 */
function start(wrap: string[] = [], nodeArgs: string[] = []): Promise<number | null> {
  log = '';
  const [cmd, ...pre] = [...wrap, process.execPath];
  const argv = [...pre, ...nodeArgs, LAUNCHER_SOURCE, '--dir', dir, '--', 'run', '--config', 'x.toml'];
  launcher = spawn(cmd!, argv, {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  launcher.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  return new Promise((r) => launcher!.on('exit', (code) => r(code)));
}

/** Resolves when the launcher has said `text` (its stderr is the event). */
function said(text: string | RegExp): Promise<void> {
  const has = () => (typeof text === 'string' ? log.includes(text) : text.test(log));
  return new Promise((resolve, reject) => {
    if (has()) return resolve();
    const t = setTimeout(() => reject(new Error(`launcher never said ${String(text)}:\n${log}`)), 20_000);
    const on = () => {
      if (!has()) return;
      clearTimeout(t);
      launcher!.stderr!.off('data', on);
      resolve();
    };
    launcher!.stderr!.on('data', on);
  });
}

/**
 * Node's argument that makes every pause of a second or more last 10 minutes (the stop's grace unused
 * here): the crash backoff at its longest, without waiting for it to grow there.
 */
const LONG_PAUSES = [
  '--import',
  `data:text/javascript,${encodeURIComponent('const t = globalThis.setTimeout; globalThis.setTimeout = (f, ms, ...a) => t(f, ms >= 1000 ? 600000 : ms, ...a);')}`,
];

/** `p`'s value, or a failure once `ms` have passed: a bound far above what it should take, not a timing. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`not done within ${ms} ms:\n${log}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

async function started(): Promise<string[][]> {
  const text = await readFile(join(dir, 'started.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '));
}

/** Waits until the stand-in of `v` has started `n` times, and gives its last pid. */
async function running(v: string, n = 1): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const mine = (await started()).filter((l) => l[0] === v);
    if (mine.length >= n) return Number(mine.at(-1)![1]);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${v} never started (${n}):\n${log}`);
}

/** The running agent's request, as plugin-update writes it, then the agent's own exit. */
async function requestSwitch(from: string, to: string, healthTimeoutMs = 10_000): Promise<void> {
  const pid = await running(from);
  await writeFile(join(dir, 'switch.json'), JSON.stringify({ version: to, healthTimeoutMs }));
  process.kill(pid, 'SIGTERM');
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-launcher-'));
  await version('1.0.0', 'good');
  await pointLink(dir, 'current', '1.0.0');
});

afterEach(async () => {
  launcher?.kill('SIGKILL');
  // The stand-ins outlive a killed launcher: each is ended by its pid.
  for (const [, pid] of await started()) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {}
  }
  await rm(dir, { recursive: true, force: true });
});

describe('launcher', () => {
  it('starts current with the run arguments, switches on request, keeps a version that proves itself healthy', async () => {
    await version('1.0.1', 'good');
    const exited = start();
    await running('1.0.0');
    expect((await started())[0]).toEqual(['1.0.0', expect.any(String), '-', 'run', '--config', 'x.toml']);
    await requestSwitch('1.0.0', '1.0.1');
    await said('1.0.1 is healthy: kept');
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.1'));
    expect(await readlink(join(dir, 'previous'))).toBe(join('versions', '1.0.0'));
    expect(
      (await started())
        .at(-1)!
        .slice(0, 1)
        .concat((await started()).at(-1)![2]!),
    ).toEqual(['1.0.1', '1.0.1']);
    expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
    // Its stop is the agent's: SIGTERM forwarded, the launcher exits with the agent's code.
    launcher!.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('starts a release with the V8 flags its package.json asks for, and only the allowed ones', async () => {
    await version('1.0.0', 'good', {
      'usepod-agent': {
        nodeFlags: [
          '--max-semi-space-size=4',
          '--inspect=0.0.0.0:9229',
          '--expose-gc',
          42,
          '--single-threaded-gc',
        ],
      },
    });
    start();
    await running('1.0.0');
    const flags = await readFile(join(dir, 'flags.log'), 'utf8');
    expect(flags.trim()).toBe('1.0.0 ["--max-semi-space-size=4","--single-threaded-gc"]');
  });

  // Only the hanging version is judged by the clock (1.5 s); the others get a health timeout they never
  // reach, so a stand-in slow to start on a loaded machine still fails for its own reason, not the clock's.
  it.each([
    ['exit', 'exited with code 3 before it was healthy', 60_000],
    ['selftest-fails', 'failed its self-test of m1', 60_000],
    ['refused', 'was refused by the coordinator: unknown provider', 60_000],
    ['hang', 'was not healthy within 2 s: it wrote no health report', 1500],
  ])(
    'a version that does not prove itself (%s) is rolled back and recorded bad',
    async (behaviour, why, healthMs) => {
      await version('1.0.1', behaviour);
      start();
      await requestSwitch('1.0.0', '1.0.1', healthMs);
      await said('rolled back to 1.0.0');
      expect(log).toContain(`1.0.1 ${why}`);
      expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
      await running('1.0.0', 2);
      const state = await readLauncher(dir);
      expect(state.trial).toBeNull();
      expect(state.bad).toEqual([{ version: '1.0.1', reason: why, at: expect.any(String) }]);
      // Asked again, the launcher refuses a bad version.
      await requestSwitch('1.0.0', '1.0.1');
      await said('switch to 1.0.1 ignored: it is recorded as bad');
      await running('1.0.0', 3);
    },
  );

  it('restarts an agent that crashed, with the same version', async () => {
    await version('1.0.0', 'crash-once');
    start();
    await said(/the agent exited with code 1; starting it again in 1 s/);
    await running('1.0.0', 2);
  });

  it('a stop during the crash backoff ends it at once, 0, with no agent started after', async () => {
    await version('1.0.0', 'exit');
    const exited = start([], LONG_PAUSES);
    await said('the agent exited with code 3; starting it again in 1 s');
    launcher!.kill('SIGTERM');
    // Without the fix it waits out the pause (10 min here), then exits with the agent's code.
    expect(await within(exited, 10_000)).toBe(0);
    expect(await started()).toHaveLength(1);
  });

  it('a stop while a roll-back waits to flip again ends it at once; the trial stays for the next start', async () => {
    await version('1.0.1', 'hang');
    const exited = start([], LONG_PAUSES);
    await requestSwitch('1.0.0', '1.0.1', 60_000);
    const trialPid = await running('1.0.1');
    // A folder where the flip's new link goes (the launcher's pid names it) fails the roll-back's flip.
    await mkdir(join(dir, `.current.${launcher!.pid}.tmp`, 'x'), { recursive: true });
    process.kill(trialPid, 'SIGKILL');
    await said('roll-back to 1.0.0 not made');
    launcher!.kill('SIGINT');
    expect(await within(exited, 10_000)).toBe(0);
    expect((await started()).map((l) => l[0])).toEqual(['1.0.0', '1.0.1']);
    expect((await readLauncher(dir)).trial).toMatchObject({ version: '1.0.1', previous: '1.0.0' });
  });

  it('a trial it did not see to its end is rolled back at its next start', async () => {
    await version('1.0.1', 'good');
    await pointLink(dir, 'previous', '1.0.0');
    await pointLink(dir, 'current', '1.0.1');
    await writeFile(
      join(dir, 'launcher.json'),
      JSON.stringify({ trial: { version: '1.0.1', previous: '1.0.0', timeoutMs: 1000 }, bad: [] }),
    );
    start();
    await said('rolled back to 1.0.0');
    await running('1.0.0');
    expect((await readLauncher(dir)).bad.map((b) => b.version)).toEqual(['1.0.1']);
  });

  it('a `current` missing at start (a Windows flip cut short) is pointed back at the version the trial came from', async () => {
    await version('1.0.1', 'good');
    await pointLink(dir, 'previous', '1.0.0');
    await rm(join(dir, 'current'));
    await symlink(join('versions', '1.0.1'), join(dir, '.current.999999.tmp'));
    await writeFile(
      join(dir, 'launcher.json'),
      JSON.stringify({ trial: { version: '1.0.1', previous: '1.0.0', timeoutMs: 1000 }, bad: [] }),
    );
    start();
    await said('current was missing: pointed it at 1.0.0');
    await running('1.0.0');
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
    // The trial never started: it is dropped, not recorded bad (its next request is heard again).
    expect(await readLauncher(dir)).toEqual({ trial: null, bad: [] });
  });

  it('a FIFO in the place of launcher.json, switch.json or health.json is no file: the agent starts, a trial is judged', async () => {
    for (const name of ['launcher.json', 'switch.json']) execFileSync('mkfifo', [join(dir, name)]);
    start();
    await running('1.0.0');
    // And a trial whose health.json is a FIFO is not healthy, nor a launcher stuck on it: rolled back.
    await version('1.0.1', 'hang');
    await rm(join(dir, 'launcher.json'));
    execFileSync('mkfifo', [join(dir, 'health.json')]);
    await requestSwitch('1.0.0', '1.0.1', 2_000);
    await said('rolled back to 1.0.0: 1.0.1 was not healthy within 2 s: it wrote no health report');
    await running('1.0.0', 2);
  });

  it('a launcher.json it cannot write (a full disk) is one line, not its end: the agent keeps running', async () => {
    // A folder in its place fails every write (EISDIR), as ENOSPC does, and for root too.
    await mkdir(join(dir, 'launcher.json'));
    await version('1.0.1', 'good');
    const exited = start();
    await requestSwitch('1.0.0', '1.0.1');
    // The trial could not be recorded, so no switch is made: the version known good starts again.
    await said(
      `${join(dir, 'launcher.json')} could not be written (EISDIR): switch to 1.0.1 not made: its trial could not be recorded; free space on its disk`,
    );
    await running('1.0.0', 2);
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
    expect(log).not.toContain('failed:');
    // No temporary file is left behind on the disk that is short of space.
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    launcher!.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('a switch whose link cannot be made is one line, not its end: the version before runs, the new one is bad', async () => {
    // A folder where `previous` goes fails the flip's rename (EISDIR), as a disk out of inodes fails it.
    await mkdir(join(dir, 'previous', 'x'), { recursive: true });
    await version('1.0.1', 'good');
    start();
    await requestSwitch('1.0.0', '1.0.1');
    await said('switch to 1.0.1 not made: it could not be switched to (EISDIR); 1.0.0 runs');
    await running('1.0.0', 2);
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
    // Recorded bad: the agent does not ask for it again at its next check (and its owner is told).
    expect(await readLauncher(dir)).toMatchObject({
      trial: null,
      bad: [{ version: '1.0.1', reason: 'could not be switched to (EISDIR)' }],
    });
    expect(log).not.toContain('failed:');
  });

  it('a roll-back whose link cannot be made is one line, not its end: the failed version is not started, the flip is tried again', async () => {
    await version('1.0.1', 'hang');
    const exited = start().then((code) => {
      throw new Error(`the launcher ended (${code}):\n${log}`);
    });
    exited.catch(() => {}); // its kill after the test is no failure
    await requestSwitch('1.0.0', '1.0.1', 60_000);
    const trialPid = await running('1.0.1');
    // A folder where the flip's new link goes (the launcher's pid names it) fails the roll-back's flip
    // (EEXIST), as a disk out of inodes fails it; then the version on trial fails.
    const blocker = join(dir, `.current.${launcher!.pid}.tmp`);
    await mkdir(join(blocker, 'x'), { recursive: true });
    process.kill(trialPid, 'SIGKILL');
    const why = '1.0.1 was killed by SIGKILL before it was healthy';
    const notMade = `roll-back to 1.0.0 not made: ${join(dir, 'current')} could not be pointed at it (EEXIST); ${why} and is not started again`;
    await Promise.race([said(notMade), exited]);
    // Kept on trial (a stop now is rolled back at the next start) and recorded bad; tried again after a pause.
    expect(await readLauncher(dir)).toMatchObject({
      trial: { version: '1.0.1', previous: '1.0.0' },
      bad: [{ version: '1.0.1', reason: 'was killed by SIGKILL before it was healthy' }],
    });
    while (log.split(notMade).length < 3) await new Promise((r) => setTimeout(r, 100));
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.1'));
    // Once the flip can be made it is: the version before runs, with the first reason.
    await rm(blocker, { recursive: true });
    await said(`rolled back to 1.0.0: ${why}`);
    await running('1.0.0', 2);
    expect((await started()).filter((l) => l[0] === '1.0.1')).toHaveLength(1);
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
    expect(await readLauncher(dir)).toMatchObject({ trial: null, bad: [{ version: '1.0.1' }] });
    expect(log).not.toContain('failed:');
  });

  it('a missing `current` that cannot be pointed back is one line, not its end: tried again after a pause', async () => {
    const exited = start().then((code) => {
      throw new Error(`the launcher ended (${code}):\n${log}`);
    });
    exited.catch(() => {}); // its kill after the test is no failure
    const pid = await running('1.0.0');
    // As a Windows roll-back cut in two leaves it, with its repair's flip failing too.
    const blocker = join(dir, `.current.${launcher!.pid}.tmp`);
    await mkdir(join(blocker, 'x'), { recursive: true });
    await rm(join(dir, 'current'));
    process.kill(pid, 'SIGKILL');
    await Promise.race([
      said(`${join(dir, 'current')} is missing and could not be pointed back (EEXIST)`),
      exited,
    ]);
    await rm(blocker, { recursive: true });
    await said('current was missing: pointed it at 1.0.0');
    await running('1.0.0', 2);
    expect(log).not.toContain('failed:');
  });

  it.runIf(spawnSync('strace', ['-V']).status === 0)(
    'writes launcher.json synced before it is renamed into place (a power cut never empties a trial)',
    async () => {
      await version('1.0.1', 'good');
      const trace = join(dir, 'strace.txt');
      const exited = start([
        'strace',
        '-f',
        '-qq',
        '-e',
        'trace=openat,fsync,rename,renameat,renameat2',
        '-o',
        trace,
      ]);
      await requestSwitch('1.0.0', '1.0.1');
      await said('1.0.1 is healthy: kept');
      // The launcher itself (strace's child) is stopped: it ends its agent and exits, and strace with it.
      const node = execFileSync('pgrep', ['-P', String(launcher!.pid)], { encoding: 'utf8' }).trim();
      process.kill(Number(node), 'SIGTERM');
      await exited;
      const lines = (await readFile(trace, 'utf8')).split('\n');
      const file = join(dir, 'launcher.json');
      // Each write of launcher.json: its temp file opened, that descriptor synced, then renamed over it.
      const opens = lines.flatMap((l, i) => {
        const m = /openat\(AT_FDCWD, "([^"]+)", [^)]*O_CREAT[^)]*\) = (\d+)/.exec(l);
        return m?.[1]?.startsWith(`${file}.`) ? [{ i, tmp: m[1], fd: m[2] }] : [];
      });
      expect(opens.length).toBeGreaterThanOrEqual(2);
      for (const o of opens) {
        const renamed = lines.findIndex((l, i) => i > o.i && l.includes(`"${o.tmp}"`) && /rename/.test(l));
        expect(renamed).toBeGreaterThan(o.i);
        const synced = lines
          .slice(o.i + 1, renamed)
          .some((l) => /fsync\((\d+)\)\s+= 0$/.exec(l)?.[1] === o.fd);
        expect(synced, `${o.tmp} renamed unsynced`).toBe(true);
      }
    },
  );

  it('a garbled launcher.json or switch.json is ignored, not trusted', async () => {
    await writeFile(
      join(dir, 'launcher.json'),
      '{"trial": {"version": "../../etc", "timeoutMs": 1}, "bad": 7}',
    );
    await writeFile(join(dir, 'switch.json'), '{"version": "../../x"}');
    start();
    await running('1.0.0');
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '1.0.0'));
  });

  it('refuses a folder another user could change (it runs what is in it): one line with the fix, no agent', async () => {
    // A folder others may write: another user could point `current` at a run.js of their own.
    await chmod(dir, 0o777);
    expect(await start()).toBe(2);
    expect(log).toContain(`not started: ${dir} can be changed by group or others (mode 0777)`);
    expect(log).toContain(`run chmod 700 ${dir}`);
    await chmod(dir, 0o700);
    // versions/ likewise, and a parent others may write without the sticky bit (they could swap the folder).
    await chmod(join(dir, 'versions'), 0o775);
    expect(await start()).toBe(2);
    expect(log).toContain(`${join(dir, 'versions')} can be changed by group or others (mode 0775)`);
    await chmod(join(dir, 'versions'), 0o700);
    const parent = await mkdtemp(join(tmpdir(), 'usepod-parent-'));
    try {
      const inner = join(parent, 'update');
      await mkdir(inner, { mode: 0o700 });
      await chmod(parent, 0o777);
      // `update --setup` says so before npm installs anything into it.
      await expect(setup(inner, '1.0.0', 'http://127.0.0.1:9/')).rejects.toThrow(
        `${parent} can be changed by group or others (mode 0777), who could swap ${inner} for their own`,
      );
      expect(await readdir(inner)).toEqual([]);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
    expect(await started()).toEqual([]);
  });

  it.runIf(process.getuid?.() === 0)('refuses a folder of another user (root runs it)', async () => {
    await chown(dir, 65534, 65534);
    expect(await start()).toBe(2);
    expect(log).toContain(`${dir} belongs to user 65534, not to this one (0): run the launcher as its owner`);
    expect(await started()).toEqual([]);
  });
});
