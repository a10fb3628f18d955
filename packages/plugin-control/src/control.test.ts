import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AgentPlugin } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  holdsPlugin,
  type TestAgent,
  type TestCoordinator,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { afterEach, describe, expect, it, vi } from 'vitest';
import controlPlugin, { type ControlReply, control, MAX_PAUSE_MS } from './index.js';

/**
 * The control socket and the owner's pause (issues 19, 27, 28), in-process against a real Unix socket
 * in a temp folder, a TestCoordinator and a vLLM emulator: what the owner can do, and what a hostile
 * line, a flood, a quiet client or a planted file cannot.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const execFileP = promisify(execFile);
const MODEL = 'Qwen/Qwen3-14B';
const FINISH =
  'data: {"choices":[{"delta":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n';

interface Running {
  t: TestAgent;
  engine: VllmEmulator;
  session: CoordinatorSession;
  /** The first capabilities frame of the session. */
  caps: Record<string, unknown>;
  keyPath: string;
  sock: string;
  pauseJson: string;
}

interface AgentOptions {
  plugins?: AgentPlugin[];
  /** Reuse another agent's identity (a restart). */
  keyPath?: string;
  coordinator?: TestCoordinator;
  /** Runs in the identity's folder before the agent starts (plants files). */
  before?: (dir: string) => Promise<void>;
  control?: Parameters<typeof controlPlugin>[0];
}

/** An agent serving a vLLM emulator with the control plugin, started and authenticated. */
async function running(o: AgentOptions = {}): Promise<Running> {
  const engine = await new VllmEmulator().start();
  const t = await createTestAgent({
    plugins: [
      vllmPlugin,
      controlPlugin({ idleMs: 300, maxConnections: 4, retryMs: 20, ...o.control }),
      ...(o.plugins ?? []),
    ],
    defaultPlugins: false,
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      limits: { max_concurrent: 16 },
      ...(o.keyPath ? { identity: { key_path: o.keyPath } } : {}),
    },
    ...(o.coordinator ? { coordinator: o.coordinator } : {}),
    logLevel: 'info',
  });
  cleanup.push(async () => {
    await t.close();
    await engine.close();
  });
  const keyPath = o.keyPath ?? t.identityPath;
  const dir = join(keyPath, '..');
  await o.before?.(dir);
  // A shared coordinator (a restart) has seen sessions before: this agent's is the next one.
  const authed = o.coordinator ? o.coordinator.nextAuthenticated() : t.coordinator.firstAuthenticated();
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await authed;
  const caps = await session.capabilities();
  return {
    t,
    engine,
    session,
    caps,
    keyPath,
    sock: join(dir, 'agent.sock'),
    pauseJson: join(dir, 'pause.json'),
  };
}

/** Writes bytes to the socket and resolves with all it answered once the agent closes the connection. */
function raw(path: string, data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(path);
    let out = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(data));
    s.on('data', (d: string) => {
      out += d;
    });
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}

const reply = async (path: string, line: string): Promise<ControlReply> =>
  JSON.parse(await raw(path, `${line}\n`)) as ControlReply;

const warnings = (t: TestAgent, text: string) =>
  t.lines.filter((l) => l.startsWith('warn ') && l.includes(text));

describe('the control socket: pause and resume', () => {
  it('during eight running jobs: all eight finish, the ninth is turned away, the coordinator hears of no model; resume brings them back', async () => {
    const a = await running();
    expect(a.caps.models).toHaveLength(1);
    expect(lstatSync(a.sock).mode & 0o777).toBe(0o600);
    a.engine.behave({ kind: 'controlled' }, { times: 8 });
    const jobs = Array.from({ length: 8 }, () => a.session.dispatch({ model_id: MODEL }));
    await a.engine.controlled.waitFor(() => a.engine.controlled.items.length >= 8);
    const streams = a.engine.controlled.items.slice(0, 8);

    const emptied = a.session.nextFrame('capabilities');
    const paused = await control(a.keyPath, {
      cmd: 'pause',
      reason: 'gaming',
      until: Date.now() + 7_200_000,
    });
    expect(paused).toMatchObject({
      ok: true,
      paused: { by: 'owner', reason: 'gaming', until: expect.any(String) },
    });
    expect((await emptied).models).toEqual([]);
    expect(await a.session.dispatch({ model_id: MODEL }).done()).toMatchObject({
      type: 'job_error',
      error_code: 'out_of_capacity',
      message: expect.stringContaining('paused by its owner (gaming)'),
    });
    for (const s of streams) s.end(FINISH);
    for (const j of jobs) expect((await j.done()).type).toBe('job_done');
    expect(JSON.parse(await readFile(a.pauseJson, 'utf8'))).toMatchObject({ by: 'owner', reason: 'gaming' });
    expect(lstatSync(a.pauseJson).mode & 0o777).toBe(0o600);

    const back = a.session.nextFrame('capabilities');
    expect(await control(a.keyPath, { cmd: 'resume' })).toMatchObject({ ok: true, paused: null, holds: [] });
    expect((await back).models).toHaveLength(1);
    expect(existsSync(a.pauseJson)).toBe(false);
    expect((await a.session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
  });

  it("a restart keeps the owner's pause and only it: a GPU hold is never written, and is not there after", async () => {
    const gpu = holdsPlugin();
    const a = await running({ plugins: [gpu.plugin] });
    gpu.hold('gpu', 'game.exe (pid 4) uses a GPU');
    // Settled: a no-op resume answers once every queued write is done.
    await control(a.keyPath, { cmd: 'resume' });
    expect(existsSync(a.pauseJson)).toBe(false);
    await control(a.keyPath, { cmd: 'pause', reason: 'gaming', until: Date.now() + 7_200_000 });
    expect(a.t.agent.holds().map((h) => h.by)).toEqual(['owner', 'gpu']);
    expect(JSON.parse(await readFile(a.pauseJson, 'utf8'))).toEqual({
      by: 'owner',
      reason: 'gaming',
      until: expect.any(Number),
    });
    await a.t.stop();

    const b = await running({ keyPath: a.keyPath, coordinator: a.t.coordinator });
    expect(b.t.agent.holds()).toMatchObject([{ by: 'owner', reason: 'gaming', until: expect.any(String) }]);
    expect(b.caps.models).toEqual([]);
    const back = b.session.nextFrame('capabilities');
    await control(b.keyPath, { cmd: 'resume' });
    expect((await back).models).toHaveLength(1);
    expect(existsSync(b.pauseJson)).toBe(false);
  });

  it('pauses and resumes in quick succession never race: the file ends as the agent ends', async () => {
    const a = await running();
    // Hundreds of writes and removals queued in one tick, then the owner's last word over the socket;
    // unqueued, an earlier write or removal lands after the last one (some rounds out of five).
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 200; i++) {
        a.t.agent.pause({ reason: `round ${i}` });
        a.t.agent.resume();
      }
      expect(await control(a.keyPath, { cmd: 'pause', reason: 'last' })).toMatchObject({ ok: true });
      expect(JSON.parse(await readFile(a.pauseJson, 'utf8'))).toMatchObject({ reason: 'last' });
      for (let i = 0; i < 200; i++) {
        a.t.agent.resume();
        a.t.agent.pause({ reason: `round ${i}` });
      }
      expect(await control(a.keyPath, { cmd: 'resume' })).toMatchObject({ ok: true, paused: null });
      expect(existsSync(a.pauseJson)).toBe(false);
    }
  });

  it('an old pause.json: the GPU’s or quiet hours’ is not restored, the owner’s is', async () => {
    const gpu = await running({
      before: (dir) =>
        writeFile(join(dir, 'pause.json'), '{"reason":"GPU in use: game.exe (pid 4) uses a GPU"}\n'),
    });
    expect(gpu.t.agent.holds()).toEqual([]);
    expect(gpu.caps.models).toHaveLength(1);
    const quiet = await running({
      before: (dir) => writeFile(join(dir, 'pause.json'), '{"reason":"quiet hours (22:00-07:00)"}\n'),
    });
    expect(quiet.t.agent.holds()).toEqual([]);
    const owner = await running({
      before: (dir) => writeFile(join(dir, 'pause.json'), '{"reason":"gaming\\u001b[2J"}\n'),
    });
    // Restored, its text folded (a file is outside text).
    expect(owner.t.agent.holds()).toMatchObject([{ by: 'owner', reason: 'gaming [2J' }]);
  });
});

describe('hostile input on the control socket', () => {
  it('each hostile line is refused in one line; the agent stays up, unpaused, and answers the next', async () => {
    const a = await running();
    const lines = [
      'null',
      '[]',
      '[{"cmd":"pause"}]',
      '"pause"',
      '42',
      'true',
      'not json',
      '{}',
      '{"cmd":"reboot"}',
      '{"cmd":"__proto__"}',
      '{"__proto__":{"cmd":"pause"}}',
      '{"cmd":"pause","until":1e400}',
      '{"cmd":"pause","until":99999999999999999999}',
      '{"cmd":"pause","until":1.5}',
      '{"cmd":"pause","until":"tomorrow"}',
      `{"cmd":"pause","until":${Date.now() - 60_000}}`,
      `{"cmd":"pause","until":${Date.now() + MAX_PAUSE_MS + 86_400_000}}`,
      `{"cmd":"pause","until":${300_000 * 365 * 86_400_000}}`,
      '{"cmd":"pause","reason":42}',
      '{"cmd":"pause","reason":null}',
      `{"cmd":"pause","reason":"${'x'.repeat(201)}"}`,
      '{"cmd":"pause","bogus":1}',
      '{"cmd":"resume","force":true}',
      '{"cmd":"selftest","model":"x"}',
      '{"cmd":"update"}',
      '{"cmd":"update","version":"../../etc"}',
      '{"cmd":"update","version":"1.2.3 && calc.exe"}',
      '{"cmd":"update","version":"1.2.3","now":true}',
      '{"cmd":"update","version":123}',
    ];
    for (const line of lines) {
      const r = await reply(a.sock, line);
      expect(r, line).toMatchObject({ ok: false, error: expect.any(String), paused: null });
      expect(r.error, line).not.toMatch(/\n/);
    }
    expect(a.t.agent.holds()).toEqual([]);
    expect(a.t.agent.state).toBe('online');
    expect(await reply(a.sock, '{"cmd":"state"}')).toMatchObject({ ok: true, paused: null });
  });

  it('`update` is passed to plugin-update; an agent without it says so in one line and serves on', async () => {
    const a = await running({ control: { updateAnswerMs: 200 } });
    expect(await reply(a.sock, '{"cmd":"update","version":"1.2.3"}')).toMatchObject({
      ok: false,
      error: 'no answer from the updater: @usepod-agent/plugin-update is not running in this agent',
      paused: null,
    });
    expect(a.t.agent.holds()).toEqual([]);
    expect(a.t.agent.state).toBe('online');
  });

  it('folds the reasons it is given and the holds it replies with', async () => {
    const gpu = holdsPlugin();
    const a = await running({ plugins: [gpu.plugin] });
    // Another local user names the process: a right-to-left override would turn what follows around.
    gpu.hold('gpu', 'GPU in use: \u001b[2J\u001b[32mOK\u001b[0m (pid 4) \u202eexe.emag\u202c \u2067x\u2069');
    const r = await reply(
      a.sock,
      JSON.stringify({ cmd: 'pause', reason: 'gaming\u001b]0;owned\u0007\r\nfake\u202e\u200f' }),
    );
    expect(r.ok).toBe(true);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting no control or bidi character is left.
    const controls = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
    expect(r.holds).toHaveLength(2);
    for (const h of r.holds ?? []) expect(h.reason).not.toMatch(controls);
    for (const h of a.t.agent.holds()) expect(h.reason).not.toMatch(controls);
  });

  it('a half line then silence is closed; a flood past the bound is turned away; the owner gets in after', async () => {
    const a = await running();
    const quiet = Array.from({ length: 4 }, () => raw(a.sock, '{"cmd":'));
    // Four held open (the bound): the fifth is closed at once, its request unanswered.
    expect(await raw(a.sock, '{"cmd":"state"}\n')).toBe('');
    // Each quiet client is closed by the idle timeout, without an answer.
    expect(await Promise.all(quiet)).toEqual(['', '', '', '']);
    expect(await control(a.keyPath, { cmd: 'state' })).toMatchObject({ ok: true });
    // A line longer than the bound with no newline is cut off too.
    expect(await raw(a.sock, 'x'.repeat(64 * 1024))).toBe('');
    expect(a.t.agent.state).toBe('online');
  });
  it('a line dripped a byte at a time is cut off at the deadline; an answered client that never closes is closed; the owner gets in', async () => {
    const a = await running();
    // A byte every 50 ms, well inside idleMs (300 ms): an idle timer restarted by each byte never fires.
    const drip = (): Promise<string> =>
      new Promise((resolve) => {
        const s = connect(a.sock);
        let out = '';
        s.setEncoding('utf8');
        const t = setInterval(() => s.write(' '), 50);
        s.on('data', (d: string) => {
          out += d;
        });
        s.on('error', () => {});
        s.on('close', () => {
          clearInterval(t);
          resolve(out);
        });
      });
    expect(await Promise.all(Array.from({ length: 4 }, drip))).toEqual(['', '', '', '']);
    // Four clients (the bound) that read their answer and keep their side open.
    const answered = (): Promise<Socket> =>
      new Promise((resolve) => {
        const s = connect({ path: a.sock, allowHalfOpen: true });
        cleanup.push(async () => void s.destroy());
        let out = '';
        s.setEncoding('utf8');
        s.on('error', () => {});
        s.on('connect', () => s.write('{"cmd":"state"}\n'));
        s.on('data', (d: string) => {
          out += d;
          if (out.endsWith('\n')) resolve(s);
        });
      });
    for (let i = 0; i < 4; i++) await answered();
    // The agent closes them after idleMs; until then the owner's connection is turned away.
    const r = await vi.waitFor(() => control(a.keyPath, { cmd: 'state' }), { timeout: 5_000, interval: 50 });
    expect(r).toMatchObject({ ok: true, paused: null });
    expect(a.t.agent.state).toBe('online');
  });
});

describe('hostile files: pause.json and the socket path', () => {
  it('a link planted at pause.json is neither read nor written through', async () => {
    const victim = join(process.env.TMPDIR ?? '/tmp', `usepod-victim-${process.pid}-${Date.now()}`);
    await writeFile(victim, '{"by":"owner","reason":"planted"}\n');
    cleanup.push(() => rm(victim, { force: true }));
    const a = await running({ before: (dir) => symlink(victim, join(dir, 'pause.json')) });
    // Not restored through the link.
    expect(a.t.agent.holds()).toEqual([]);
    expect(warnings(a.t, 'pause.json is ignored').join()).toMatch(/symbolic link/);
    await control(a.keyPath, { cmd: 'pause', reason: 'mine' });
    expect(await readFile(victim, 'utf8')).toBe('{"by":"owner","reason":"planted"}\n');
    expect(lstatSync(a.pauseJson).isFile()).toBe(true);
    expect(JSON.parse(await readFile(a.pauseJson, 'utf8'))).toMatchObject({ reason: 'mine' });
    // Planted again: doctor names it.
    await rm(a.pauseJson);
    await symlink(victim, a.pauseJson);
    expect(await a.t.agent.doctor({ engineCapacity: undefined })).toContainEqual(
      expect.objectContaining({
        name: 'pause',
        level: 'warn',
        detail: expect.stringMatching(/symbolic link/),
      }),
    );
  });

  it('garbage in pause.json is ignored with a warning, never a crash', async () => {
    const bad = [
      'not json',
      'null',
      '[1,2]',
      '{"reason":42}',
      '{"reason":"x","until":"soon"}',
      `{"reason":"far","until":${Date.now() + 2 * MAX_PAUSE_MS}}`,
      `{"reason":"${'x'.repeat(8_000)}"}`,
    ];
    for (const text of bad) {
      const a = await running({ before: (dir) => writeFile(join(dir, 'pause.json'), text) });
      expect(a.t.agent.holds(), text.slice(0, 40)).toEqual([]);
      expect(warnings(a.t, 'pause.json is ignored'), text.slice(0, 40)).toHaveLength(1);
    }
    // A FIFO: reading it would wait for a writer forever, and the agent would never start.
    const fifo = await running({
      before: (dir) => execFileP('mkfifo', [join(dir, 'pause.json')]).then(() => {}),
    });
    expect(fifo.t.agent.holds()).toEqual([]);
    expect(warnings(fifo.t, 'pause.json is ignored').join()).toMatch(/not a regular file/);
  }, 60_000);

  it('pause.json as a folder: the pause holds, one warning, retried until it can be written, no rejection', async () => {
    const a = await running({ before: (dir) => mkdir(join(dir, 'pause.json')) });
    expect(warnings(a.t, 'pause.json is ignored')).toHaveLength(1);
    const r = await control(a.keyPath, { cmd: 'pause', reason: 'gaming' });
    expect(r).toMatchObject({
      ok: true,
      paused: { reason: 'gaming' },
      warning: expect.stringMatching(/could not be saved/),
    });
    await vi.waitFor(() => expect(a.t.lines.join('\n')).toMatch(/pause state could not be saved/), {
      timeout: 5_000,
    });
    await rmdir(a.pauseJson);
    await vi.waitFor(() => expect(a.t.lines.join('\n')).toMatch(/the pause state is saved again/), {
      timeout: 5_000,
      interval: 20,
    });
    expect(warnings(a.t, 'pause state could not be saved')).toHaveLength(1);
    expect(JSON.parse(await readFile(a.pauseJson, 'utf8'))).toMatchObject({ reason: 'gaming' });
  });

  it('a resume that cannot be saved (the disk went read-only) says a restart may pause the agent again', async (ctx) => {
    const disk = await mkdtemp(join(tmpdir(), 'usepod-ro-'));
    cleanup.push(() => rm(disk, { recursive: true, force: true }));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', disk]).status !== 0)
      return ctx.skip('no tmpfs could be mounted here (needs root)');
    cleanup.push(async () => void spawnSync('umount', [disk]));
    const a = await running({ keyPath: join(disk, 'identity.key') });
    expect(await control(a.keyPath, { cmd: 'pause', reason: 'gaming' })).toMatchObject({ ok: true });
    expect(spawnSync('mount', ['-o', 'remount,ro', disk]).status).toBe(0);
    const r = await control(a.keyPath, { cmd: 'resume' });
    // Resumed now, but pause.json still holds the pause: not 'a restart would forget it'.
    expect(r).toMatchObject({ ok: true, paused: null });
    expect(r.warning).toMatch(
      /could not be saved to .*pause\.json \(.*EROFS.*\): a restart may pause the agent again$/,
    );
    expect(await readFile(a.pauseJson, 'utf8')).toContain('gaming');
  });

  it('a file or a link at the socket path is left alone, in one warning; the agent serves on', async () => {
    const file = await running({ before: (dir) => writeFile(join(dir, 'agent.sock'), 'precious') });
    expect(await readFile(file.sock, 'utf8')).toBe('precious');
    expect(warnings(file.t, 'control socket could not be opened').join()).toMatch(
      /is not a socket: remove it/,
    );
    expect(file.caps.models).toHaveLength(1);
    // doctor says so too.
    expect(await file.t.agent.doctor({ engineCapacity: undefined })).toContainEqual({
      name: 'control',
      level: 'warn',
      detail: expect.stringMatching(/pause and resume cannot work: .*agent\.sock is not a socket$/),
      fix: 'remove it, then restart the agent',
    });
    const link = await running({ before: (dir) => symlink('/dev/null', join(dir, 'agent.sock')) });
    expect(lstatSync(link.sock).isSymbolicLink()).toBe(true);
    expect(warnings(link.t, 'control socket could not be opened').join()).toMatch(/symbolic link/);
  });

  it('a folder any user can write is refused, a group-writable one said; a stale socket of ours is replaced', async () => {
    const open = await running({ before: (dir) => chmod(dir, 0o777) });
    expect(existsSync(open.sock)).toBe(false);
    expect(warnings(open.t, 'control socket could not be opened').join()).toMatch(
      /mode 0777\): run chmod 700/,
    );
    // Another user's process listens there instead, with a lie: the owner's CLI does not believe it.
    const liar = spawn(
      process.execPath,
      [
        '-e',
        `const reply = JSON.stringify({ ok: true, paused: { by: 'owner', reason: '\\u001b]0;x\\u0007' } });
         require('node:net').createServer((c) => c.end(reply + '\\n')).listen(process.argv[1], () => {
           require('node:fs').chmodSync(process.argv[1], 0o777);
           console.log('on');
         });`,
        open.sock,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        ...(process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}),
      },
    );
    cleanup.push(async () => void liar.kill());
    await new Promise((r) => liar.stdout.once('data', r));
    await expect(control(open.keyPath, { cmd: 'pause' })).rejects.toThrow(
      /can be written by any user \(mode 0777\), so its control socket may be anyone's: run chmod 700/,
    );
    // Group-writable (a Kubernetes volume under fsGroup): served, and said.
    const group = await running({ before: (dir) => chmod(dir, 0o2770) });
    expect(await control(group.keyPath, { cmd: 'state' })).toMatchObject({ ok: true });
    expect(warnings(group.t, 'control socket is served, but').join()).toMatch(/mode 2770\).*chmod g-w/);
    // A crashed agent's socket: the file is there, nobody listens on it.
    const a = await running({
      before: (dir) =>
        execFileP(process.execPath, [
          '-e',
          `require('node:net').createServer().listen(${JSON.stringify(join(dir, 'agent.sock'))}, () => process.kill(process.pid, 'SIGKILL'))`,
        ]).then(
          () => undefined,
          () => undefined,
        ),
    });
    expect(await control(a.keyPath, { cmd: 'state' })).toMatchObject({ ok: true });
    expect(lstatSync(a.sock).mode & 0o777).toBe(0o600);
  });

  it('a key folder reached through a link (moved to another disk) is served: pause and resume work', async () => {
    const base = await mkdtemp(join(tmpdir(), 'usepod-link-'));
    cleanup.push(() => rm(base, { recursive: true, force: true }));
    await mkdir(join(base, 'disk'), { mode: 0o700 });
    await symlink(join(base, 'disk'), join(base, '.usepod-agent'));
    const a = await running({ keyPath: join(base, '.usepod-agent', 'identity.key') });
    expect(warnings(a.t, 'control socket').join()).toBe('');
    expect(await control(a.keyPath, { cmd: 'pause', reason: 'gaming' })).toMatchObject({ ok: true });
    expect(await readFile(join(base, 'disk', 'pause.json'), 'utf8')).toContain('gaming');
  });

  it('a second key in the same folder leaves the first agent its socket and its pause.json', async () => {
    const first = await running();
    expect(await control(first.keyPath, { cmd: 'pause', reason: 'first agent only' })).toMatchObject({
      ok: true,
    });
    await vi.waitFor(
      async () => expect(await readFile(first.pauseJson, 'utf8')).toContain('first agent only'),
      { timeout: 10_000 },
    );
    const second = await running({ keyPath: join(first.keyPath, '..', 'second.key') });
    expect(warnings(second.t, 'another agent serves the control socket').join()).toMatch(/folder of its own/);
    // The second neither took the first's pause nor its socket: the owner's commands still reach the first.
    expect(second.t.agent.holds()).toEqual([]);
    expect(await control(first.keyPath, { cmd: 'state' })).toMatchObject({
      ok: true,
      paused: { reason: 'first agent only' },
    });
    // And the first's pause.json is untouched when the second's owner pauses it in code (written by the
    // time the second has closed, were it written at all).
    second.t.agent.pause({ reason: 'second, in code' });
    await second.t.close();
    expect(await readFile(first.pauseJson, 'utf8')).toContain('first agent only');
  });
});
