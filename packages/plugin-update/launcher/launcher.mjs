#!/usr/bin/env node
// usepod-agent-launcher (issue 29): runs `<dir>/current` of the side-by-side install, restarts it when it
// crashes, switches to a version the running agent asked for, and keeps that version only when it proves
// itself healthy (authenticated, models advertised, one passing self-test per model) within its health
// timeout; else it goes back to the previous version and records the new one as bad.
//
// It is copied once into the state folder and never changes with releases: Node built-ins only, and the
// files it reads are small, bounded and checked (a file on disk is untrusted).
//
// Usage: node launcher.mjs --dir <state dir> [--] <arguments of `usepod-agent run`>
//
// Windows: `current` and `previous` are directory junctions (no admin rights needed), and a link cannot be
// renamed over another there, so a flip removes the old link and renames the new one into place; a flip
// cut between the two leaves no `current`, which the next start repairs (`recoverCurrent`).
import { spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, posix, win32 } from 'node:path';
import { fileURLToPath } from 'node:url';

const VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}(?:-[0-9A-Za-z.-]{1,64})?$/;
const MAX_FILE = 64 * 1024;
const MAX_BAD = 50;
const DEFAULT_HEALTH_MS = 5 * 60_000;
/** Grace for an unhealthy child to stop on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 15_000;

function parseArgs(argv) {
  let dir;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dir' && dir === undefined) dir = argv[++i];
    else if (a.startsWith('--dir=') && dir === undefined) dir = a.slice(6);
    else if (a === '--') {
      rest.push(...argv.slice(i + 1));
      break;
    } else rest.push(a);
  }
  if (!dir) {
    process.stderr.write('usepod-agent-launcher: --dir <state folder> is required\n');
    process.exit(2);
  }
  return { dir, args: rest.length > 0 ? rest : ['run'] };
}

const say = (msg) => process.stderr.write(`${new Date().toISOString()} launcher: ${msg}\n`);
/** Text from a file folded to one bounded printable line before it reaches a log or a file. */
const fold = (s) =>
  String(s)
    .replace(/[^\x20-\x7e]+/g, ' ')
    .slice(0, 300);

/**
 * A small JSON file, or undefined when absent, not a regular file, too big or not JSON. Opened without
 * blocking and checked on the open file: a FIFO in its place would block this launcher (and its signal
 * handlers) for good before it starts the agent.
 */
function readJson(path) {
  let fd;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    const st = fstatSync(fd);
    // Bounded before it is read: a planted giant file costs nothing.
    if (!st.isFile() || st.size > MAX_FILE) return undefined;
    const v = JSON.parse(readFileSync(fd, 'utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Written to a new temporary file (never through a link), then renamed over the old one; 0600. A failure
 * (a full disk) throws and leaves no temporary file behind.
 */
function writeJson(path, value) {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    unlinkSync(tmp);
  } catch {}
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      // Whole or failed: writeSync may stop short on a nearly full disk, and a cut file reads as no state.
      writeFileSync(fd, `${JSON.stringify(value, null, 2)}\n`);
      // On disk before it is renamed into place: after a power cut, a file system that does not flush a
      // renamed file's data by itself (XFS) may leave it empty, and a trial forgotten is a version kept
      // unjudged (its link flip, after this, does land).
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
  // The rename itself, before the flip that follows it; best effort (not every OS syncs a folder).
  let dirFd;
  try {
    dirFd = openSync(dirname(path), constants.O_RDONLY);
    fsyncSync(dirFd);
  } catch {
  } finally {
    if (dirFd !== undefined) closeSync(dirFd);
  }
}

/**
 * Why another local user could change what this launcher runs, or undefined. It runs whatever `current`
 * and versions/ hold, so the folder and versions/ must be this user's (or root's) and writable by no one
 * else, in a parent others cannot move the folder out of (writable by them without the sticky bit).
 * Windows: its ACLs are not modes (undefined).
 */
export function folderProblem(dir) {
  const uid = process.getuid?.();
  if (uid === undefined) return undefined;
  let real;
  try {
    real = realpathSync(dir);
  } catch (err) {
    return `${dir} cannot be read (${fold(err?.code ?? err)}): set it up with \`usepod-agent update --setup\``;
  }
  const mode = (st) => (st.mode & 0o7777).toString(8).padStart(4, '0');
  for (const path of [real, join(real, 'versions')]) {
    let st;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (st.uid !== uid && st.uid !== 0)
      return `${path} belongs to user ${st.uid}, not to this one (${uid}): run the launcher as its owner`;
    if (st.mode & 0o022)
      return `${path} can be changed by group or others (mode ${mode(st)}), who could replace the version it runs: run chmod 700 ${path}`;
  }
  const parent = statSync(dirname(real));
  if (parent.mode & 0o022 && !(parent.mode & 0o1000))
    return `${dirname(real)} can be changed by group or others (mode ${mode(parent)}), who could swap ${real} for their own: keep the update folder where only this user writes`;
  return undefined;
}

/** The state launcher.json could not be given (a full disk): used in place of the file until it is written. */
let unsaved;

/**
 * launcher.json now says `state`. A write that fails (a full disk, a read-only folder) is one line saying
 * what it means (`consequence`), never the launcher's end: that left no agent running at all, and every
 * restart failed the same way. The state is kept in memory meanwhile and written again at the next turn.
 */
function saveState(dir, state, consequence) {
  const path = join(dir, 'launcher.json');
  try {
    writeJson(path, state);
    unsaved = undefined;
    return true;
  } catch (err) {
    unsaved = state;
    say(
      `${path} could not be written (${fold(err?.code ?? err?.message ?? err)}): ${consequence}; free space on its disk`,
    );
    return false;
  }
}

/** Writes the state kept in memory once the disk takes it again; quiet while it still fails. */
function retryUnsaved(dir) {
  const path = join(dir, 'launcher.json');
  try {
    writeJson(path, unsaved);
    unsaved = undefined;
    say(`${path} is written again`);
  } catch {}
}

/** launcher.json, what this launcher alone writes: the version on trial and the bad ones. */
function readState(dir) {
  const raw = readJson(join(dir, 'launcher.json')) ?? {};
  const bad = Array.isArray(raw.bad)
    ? raw.bad
        .filter(
          (b) => b && VERSION.test(b.version) && typeof b.reason === 'string' && typeof b.at === 'string',
        )
        .slice(-MAX_BAD)
        .map((b) => ({ version: b.version, reason: fold(b.reason), at: fold(b.at).slice(0, 40) }))
    : [];
  const t = raw.trial;
  const trial =
    t &&
    VERSION.test(t.version) &&
    (t.previous === null || VERSION.test(t.previous)) &&
    Number.isFinite(t.timeoutMs) &&
    t.timeoutMs > 0
      ? { version: t.version, previous: t.previous, timeoutMs: Math.min(t.timeoutMs, 6 * 3600_000) }
      : null;
  return { trial, bad };
}

/**
 * The CLI's entry in a version folder. `npm install --prefix <folder>` (a local install, not `-g`) lays
 * out `<folder>/node_modules/usepod-agent/` on every platform (a global one would add lib/ on Unix only);
 * the path is joined with the platform's separators.
 */
export function entryOf(versionDir, platform = process.platform) {
  return (platform === 'win32' ? win32 : posix).join(
    versionDir,
    'node_modules',
    'usepod-agent',
    'bin',
    'run.js',
  );
}

/** The version a link (`current`, `previous`) points at, when it is a folder of versions/. */
export function linked(dir, name) {
  try {
    // A junction reads back as an absolute Windows path, a symlink as versions/<v>: the last part is the version.
    const v = basename(readlinkSync(join(dir, name)).replace(/[\\/]+$/, ''));
    return VERSION.test(v) && existsSync(join(dir, 'versions', v)) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Points a link at versions/<v>. Unix: a new link renamed over the old, never a moment without one.
 * Windows: a junction (a symlink elsewhere), and since a rename cannot replace a link there, the old one
 * is removed first; a stop between the two leaves no `current`, repaired by `recoverCurrent`.
 */
export function point(dir, name, version, platform = process.platform) {
  if (!VERSION.test(version)) throw new Error(`"${fold(version)}" is not a version`);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  try {
    unlinkSync(tmp);
  } catch {}
  if (platform === 'win32') {
    symlinkSync(join('versions', version), tmp, 'junction');
    try {
      unlinkSync(join(dir, name));
    } catch (err) {
      if (err?.code !== 'ENOENT') throw err;
    }
  } else symlinkSync(join('versions', version), tmp);
  renameSync(tmp, join(dir, name));
}

/** A complete install of `version` (its CLI entry is there). */
const complete = (dir, version) =>
  VERSION.test(version) && existsSync(entryOf(join(dir, 'versions', version)));

/** Newest first, by the numbers of x.y.z (a prerelease after its release's siblings is close enough here). */
function newestFirst(a, b) {
  const pa = a.split(/[.-]/).slice(0, 3).map(Number);
  const pb = b.split(/[.-]/).slice(0, 3).map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pb[i] - pa[i];
  return a.includes('-') === b.includes('-') ? 0 : a.includes('-') ? 1 : -1;
}

/**
 * `current` is missing or points nowhere (a Windows flip cut between removing the old link and renaming
 * the new one, or a hand's mistake): points it at the version known good, in this order: the version the
 * trial in launcher.json came from, `previous`, the newest complete install not recorded bad. Returns the
 * version chosen, or undefined when there is none. Leftover temporary links are removed.
 */
export function recoverCurrent(dir, state, platform = process.platform) {
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {}
  for (const e of entries)
    if (/^\.(current|previous)\.\d+\.tmp$/.test(e))
      try {
        unlinkSync(join(dir, e));
      } catch {}
  const bad = new Set(state.bad.map((b) => b.version));
  let installed = [];
  try {
    installed = readdirSync(join(dir, 'versions'))
      .filter((v) => VERSION.test(v))
      .sort(newestFirst);
  } catch {}
  const choice = [state.trial?.previous, linked(dir, 'previous'), ...installed].find(
    (v) => v && !bad.has(v) && complete(dir, v),
  );
  if (!choice) return undefined;
  point(dir, 'current', choice, platform);
  say(`${join(dir, 'current')} was missing: pointed it at ${choice}`);
  return choice;
}

/** switch.json, the running agent's (or `update --now`'s) request, consumed once. */
function takeSwitch(dir) {
  const path = join(dir, 'switch.json');
  const sw = readJson(path);
  try {
    unlinkSync(path);
  } catch {}
  if (!sw || !VERSION.test(sw.version)) return undefined;
  const timeoutMs =
    Number.isFinite(sw.healthTimeoutMs) && sw.healthTimeoutMs > 0 ? sw.healthTimeoutMs : DEFAULT_HEALTH_MS;
  return { version: sw.version, timeoutMs: Math.min(timeoutMs, 6 * 3600_000) };
}

/** Flips `current` to the requested version (`previous` to the old one) and puts it on trial. */
export function beginSwitch(dir, state, sw, platform = process.platform) {
  const from = linked(dir, 'current');
  if (sw.version === from) return false;
  if (!complete(dir, sw.version)) {
    say(`switch to ${sw.version} ignored: versions/${sw.version} is not a complete install`);
    return false;
  }
  if (state.bad.some((b) => b.version === sw.version)) {
    say(`switch to ${sw.version} ignored: it is recorded as bad on this machine`);
    return false;
  }
  // The trial is recorded before the flip: a stop after it finds the new version on trial (rolled back,
  // never kept unjudged); one before it, or a Windows flip cut in two, goes back to `from`.
  state.trial = { version: sw.version, previous: from ?? null, timeoutMs: sw.timeoutMs };
  if (!saveState(dir, state, `switch to ${sw.version} not made: its trial could not be recorded`)) {
    state.trial = null;
    return false;
  }
  try {
    if (from) point(dir, 'previous', from, platform);
    point(dir, 'current', sw.version, platform);
  } catch (err) {
    // A flip that fails (no inode left, a folder where a link goes) is one line, never the launcher's end
    // (that left no agent, and the service's restart asked again for good). `current` still names `from`
    // (a flip is one rename; a Windows one cut in two is repaired). Recorded bad like a failed trial: the
    // agent asking for it again at every start would drain and exit each time.
    const why = `could not be switched to (${fold(err?.code ?? err?.message ?? err)})`;
    state.trial = null;
    state.bad = [...state.bad, { version: sw.version, reason: why, at: new Date().toISOString() }].slice(
      -MAX_BAD,
    );
    saveState(dir, state, `${sw.version} is not recorded as bad yet`);
    try {
      if (!linked(dir, 'current')) recoverCurrent(dir, state, platform);
    } catch {}
    say(`switch to ${sw.version} not made: it ${why}; ${from ?? 'the version before'} runs`);
    return false;
  }
  say(
    `switched to ${sw.version} (from ${from ?? 'none'}); it has ${Math.round(sw.timeoutMs / 1000)} s to prove itself healthy`,
  );
  return true;
}

/**
 * Back to the version before the trial; the trial's version is recorded bad, with why. False when the
 * flip could not be made: the trial is kept (in launcher.json too) and the caller tries again later.
 */
export function rollBack(dir, state, reason, platform = process.platform) {
  const trial = state.trial;
  const at = new Date().toISOString();
  // The first reason stands: a roll-back done again after a stop says why the version failed, not the stop.
  if (!state.bad.some((b) => b.version === trial.version))
    state.bad = [...state.bad, { version: trial.version, reason: fold(reason), at }].slice(-MAX_BAD);
  // Bad is recorded before the flip and the trial cleared after it: a flip cut short (a stop, a Windows
  // flip between its two steps) is finished at the next start, from launcher.json, never lost.
  // Unrecorded (a full disk), the flip back is still made: the version known good runs meanwhile.
  saveState(dir, state, `${trial.version} is not recorded as bad yet`);
  const why = state.bad.find((b) => b.version === trial.version)?.reason ?? fold(reason);
  const back = trial.previous && existsSync(join(dir, 'versions', trial.previous));
  if (back)
    try {
      point(dir, 'current', trial.previous, platform);
    } catch (err) {
      // A flip that fails (no inode left, something where the new link goes) is one line, never the
      // launcher's end (that left no agent, and the service's restart failed the same way). The trial is
      // kept, so the roll-back is tried again (after a pause, or at the next start). Meanwhile nothing runs:
      // not the version that just failed, nor the previous one while `current` names another (the agent
      // and `update` take the link for the version running, a switch for where it comes from). A Windows
      // flip cut in two is repaired at the next turn (`recoverCurrent`).
      say(
        `roll-back to ${trial.previous} not made: ${join(dir, 'current')} could not be pointed at it (${fold(err?.code ?? err?.message ?? err)}); ${trial.version} ${why} and is not started again: the roll-back is tried again after a pause`,
      );
      return false;
    }
  state.trial = null;
  if (!unsaved) saveState(dir, state, `the end of ${trial.version}'s trial is not recorded yet`);
  // Said once recorded, so a reader of the line finds launcher.json already saying so.
  if (back) say(`rolled back to ${trial.previous}: ${trial.version} ${why}`);
  else say(`${trial.version} ${why}, and there is no previous version to go back to`);
  return true;
}

/**
 * The V8 flags a release asks `run` to start with (its package.json, `"usepod-agent": { "nodeFlags" }`;
 * decision 0008: the young generation's size, which V8 reads only at start). The file is on disk, so
 * untrusted: only these flags, with a bounded number, are passed; anything else is dropped.
 */
const NODE_FLAG =
  /^--(?:max-semi-space-size=\d{1,4}|max-old-space-size=\d{1,6}|single-threaded-gc|optimize-for-size)$/;
export function nodeFlagsOf(packageRoot) {
  const flags = readJson(join(packageRoot, 'package.json'))?.['usepod-agent']?.nodeFlags;
  return Array.isArray(flags)
    ? flags.filter((f) => typeof f === 'string' && NODE_FLAG.test(f)).slice(0, 8)
    : [];
}

function startAgent(dir, args, trial) {
  const entry = entryOf(realpathSync(join(dir, 'current')));
  const flags = nodeFlagsOf(dirname(dirname(entry)));
  const child = spawn(process.execPath, [...flags, entry, ...args], {
    stdio: 'inherit',
    env: { ...process.env, USEPOD_UPDATE_DIR: dir, USEPOD_UPDATE_TRIAL: trial ? trial.version : '' },
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (err) => resolve({ code: 127, signal: null, error: err.message }));
  });
  return { child, exited };
}

const describeExit = (e) =>
  e.error
    ? `could not start (${fold(e.error)})`
    : e.signal
      ? `was killed by ${e.signal}`
      : `exited with code ${e.code}`;

/**
 * The health file the trial's agent writes (plugin-update, health.ts): resolves with a verdict once it is
 * healthy or has failed; undefined until then.
 */
function verdict(dir, trial, pid) {
  const h = readJson(join(dir, 'health.json'));
  if (!h || h.version !== trial.version || h.pid !== pid) return undefined;
  if (typeof h.refused === 'string')
    return { ok: false, why: `was refused by the coordinator: ${fold(h.refused)}` };
  const models = Array.isArray(h.advertised)
    ? h.advertised.filter((m) => typeof m === 'string').slice(0, 1000)
    : [];
  const tests = h.selftests && typeof h.selftests === 'object' ? h.selftests : {};
  const failed = models.find((m) => tests[m] === 'fail');
  if (failed) return { ok: false, why: `failed its self-test of ${fold(failed)}` };
  if (h.authenticated === true && models.length > 0 && models.every((m) => tests[m] === 'pass'))
    return { ok: true };
  return undefined;
}

/** What the trial's agent had not done yet, for the reason of a timeout. */
function missing(dir, trial, pid) {
  const h = readJson(join(dir, 'health.json'));
  if (!h || h.version !== trial.version || h.pid !== pid) return 'it wrote no health report';
  if (h.authenticated !== true) return 'it did not authenticate';
  const models = Array.isArray(h.advertised) ? h.advertised : [];
  if (models.length === 0) return 'it advertised no model';
  return 'its self-tests did not all pass';
}

function watchHealth(dir, trial, child, exited) {
  return new Promise((resolve) => {
    const started = Date.now();
    const tick = setInterval(() => {
      const v = verdict(dir, trial, child.pid);
      if (v) return done(v.ok ? { ok: true } : { ok: false, why: v.why });
      if (Date.now() - started > trial.timeoutMs)
        done({
          ok: false,
          why: `was not healthy within ${Math.round(trial.timeoutMs / 1000)} s: ${missing(dir, trial, child.pid)}`,
        });
    }, 250);
    const done = (v) => {
      clearInterval(tick);
      resolve(v);
    };
    exited.then((e) => done({ ok: false, why: `${describeExit(e)} before it was healthy` }));
  });
}

async function stopChild(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(t);
}

async function main() {
  const { dir, args } = parseArgs(process.argv.slice(2));
  const unsafe = folderProblem(dir);
  if (unsafe) {
    say(`not started: ${unsafe}`);
    process.exit(2);
  }
  let stopping = false;
  let current;
  const agentRuns = () =>
    current?.child.pid !== undefined && current.child.exitCode === null && current.child.signalCode === null;
  const forward = (sig) => {
    if (sig !== 'SIGHUP') stopping = true;
    // No agent to stop (a crash's backoff, a roll-back's flip waiting to be tried again): the launcher ends
    // now, 0 as a service manager expects of a stop, not after the pause (up to 60 s, past systemd's stop
    // timeout). Nothing is half done between two turns: a trial left recorded is finished at the next start.
    if (stopping && !agentRuns()) process.exit(0);
    current?.child.kill(sig);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => forward(sig));

  let backoffMs = 1000;
  /** The crash backoff's pause, with no agent running: a flip that failed is tried again after it. */
  const pause = async () => {
    await new Promise((r) => setTimeout(r, backoffMs));
    backoffMs = Math.min(backoffMs * 2, 60_000);
  };
  for (;;) {
    if (unsaved) retryUnsaved(dir);
    // A state the disk did not take is the true one, not the file's older one.
    const state = unsaved ?? readState(dir);
    if (!linked(dir, 'current'))
      try {
        recoverCurrent(dir, state);
      } catch (err) {
        // Its flip failed as a roll-back's can: tried again after a pause, the trial kept meanwhile.
        say(
          `${join(dir, 'current')} is missing and could not be pointed back (${fold(err?.code ?? err?.message ?? err)}): tried again after a pause`,
        );
        await pause();
        continue;
      }
    // A trial the launcher did not see to its end (it was stopped, the machine rebooted) is not trusted.
    if (state.trial && linked(dir, 'current') === state.trial.version) {
      if (!rollBack(dir, state, 'was on trial when the launcher stopped')) {
        await pause();
        continue;
      }
    } else if (state.trial) {
      state.trial = null;
      saveState(dir, state, 'the dropped trial is not recorded yet');
    }
    const sw = takeSwitch(dir);
    if (sw) beginSwitch(dir, state, sw);
    if (!linked(dir, 'current')) {
      say(
        `${join(dir, 'current')} does not point at an installed version: set it up with \`usepod-agent update --setup\``,
      );
      process.exit(2);
    }
    const upSince = Date.now();
    current = startAgent(dir, args, state.trial);
    const { child, exited } = current;
    if (state.trial) {
      const v = await watchHealth(dir, state.trial, child, exited);
      if (stopping) break;
      if (!v.ok) {
        await stopChild(child, exited);
        const back = rollBack(dir, state, v.why);
        if (stopping) break;
        if (!back) await pause();
        continue;
      }
      // Recorded before it is said: whoever reads the line finds the file already saying so.
      const kept = state.trial.version;
      state.trial = null;
      saveState(dir, state, `${kept} is kept, in memory only until it is written`);
      say(`${kept} is healthy: kept`);
    }
    const e = await exited;
    if (stopping) process.exit(e.code ?? 0);
    if (existsSync(join(dir, 'switch.json'))) {
      backoffMs = 1000;
      continue;
    }
    if (Date.now() - upSince > 60_000) backoffMs = 1000;
    say(`the agent ${describeExit(e)}; starting it again in ${Math.round(backoffMs / 1000)} s`);
    await pause();
  }
  const e = await current.exited;
  process.exit(e.code ?? 0);
}

/** Run as a program (also through npm's bin link); imported, it only lends its helpers (tests). */
function isMain() {
  try {
    return (
      Boolean(process.argv[1]) &&
      realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    );
  } catch {
    return false;
  }
}

if (isMain())
  main().catch((err) => {
    say(`failed: ${fold(err?.stack ?? err)}`);
    process.exit(1);
  });
