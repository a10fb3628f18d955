import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { type AgentAccess, engineText, errorMessage, type Logger } from '@usepod-agent/core';
import type { PauseStore } from './pause-state.js';
import {
  type ControlReply,
  type ControlRequest,
  checkUntil,
  controlPath,
  holdView,
  MAX_REASON,
  MAX_REQUEST,
  parseRequest,
  type UpdateAnswer,
} from './protocol.js';

/**
 * The control socket's listening side (issue 19, hardened by issue 28). A Unix socket beside the identity
 * key, created 0600 in a folder only its user can write, so only the operator's user (and root) can use
 * it; on Windows a named pipe. Never a network port. Nothing sent to it can throw in a listener: a line is
 * bounded, checked (protocol.ts) and answered; a connection that sends no full line in `idleMs` is closed,
 * and so is one still open `idleMs` after its answer; at most `maxConnections` are open at once.
 */

export interface ServeOptions {
  log: Logger;
  /** The owner's pause on disk: a reply to `pause`/`resume` waits for its write. */
  store: PauseStore;
  /** A connection must send its request line within this (default 5 s). */
  idleMs?: number;
  /** Connections open at once; more are closed as they arrive (default 32). */
  maxConnections?: number;
  /** `update`: asks the agent's updater to drain and switch to an installed version now. */
  update?: (version: string) => Promise<UpdateAnswer>;
}

/** What is wrong with the socket's folder or path: `refuse` keeps the socket closed, `warn` is said. */
export interface PathProblem {
  level: 'refuse' | 'warn';
  why: string;
  fix: string;
}

/**
 * The socket's folder and path, checked. Refused: a folder anyone may write (another user could swap the
 * socket or plant files beside the key), one owned by another user (root aside), or anything but a
 * socket of ours at the path (one left by a crashed agent, or the running agent's own). Said, not
 * refused: a group-writable folder (a Kubernetes volume under fsGroup is 2775: its group is the pod's).
 */
export function pathProblem(path: string): PathProblem | undefined {
  const dir = dirname(path);
  const uid = process.getuid?.();
  // The folder a link there leads to (a dotfolder moved to another disk): the key is read through it too.
  const d = statSync(dir, { throwIfNoEntry: false });
  if (!d) return undefined;
  const mode = (d.mode & 0o7777).toString(8).padStart(4, '0');
  if (!d.isDirectory()) {
    return { level: 'refuse', why: `${dir} is not a folder`, fix: 'use a key_path in a folder of its own' };
  }
  if (uid !== undefined && d.uid !== uid && d.uid !== 0) {
    const why = `${dir} belongs to user ${d.uid}, not to the agent's user ${uid}`;
    return { level: 'refuse', why, fix: 'run the agent as the user who owns its key' };
  }
  if ((d.mode & 0o002) !== 0) {
    const why = `${dir} can be written by any user (mode ${mode})`;
    return { level: 'refuse', why, fix: `run chmod 700 ${dir}` };
  }
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st && !(st.isSocket() && (uid === undefined || st.uid === uid))) {
    const what = st.isSymbolicLink()
      ? 'a symbolic link'
      : st.isSocket()
        ? "another user's socket"
        : 'not a socket';
    return { level: 'refuse', why: `${path} is ${what}`, fix: 'remove it, then restart the agent' };
  }
  if ((d.mode & 0o020) !== 0) {
    const why = `${dir} can be written by its group (mode ${mode}): a member could replace the control socket`;
    return { level: 'warn', why, fix: `run chmod g-w ${dir} unless the group is only this agent's` };
  }
  return undefined;
}

/**
 * Whether a process listens on the socket at `path`: another agent whose key is in the same folder (the
 * identity lock is per key, the socket per folder). A socket file nobody listens on is a crashed agent's.
 */
export function answers(path: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (live: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(live);
    };
    // Accepted but silent is still a listener; a listener too busy to accept in a second is taken as one.
    const t = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Checks the folder and path before listening (`pathProblem`: refused in one line), then removes a
 * socket left by a crashed agent (the plugin asked `answers` first: nobody listens on it).
 */
function preparePath(path: string, log: Logger): void {
  const problem = pathProblem(path);
  if (problem?.level === 'refuse') throw new Error(`${problem.why}: ${problem.fix}`);
  if (problem) log.warn('the control socket is served, but', { why: problem.why, fix: problem.fix });
  if (lstatSync(path, { throwIfNoEntry: false })) unlinkSync(path);
}

/** A listening control socket. */
export interface ControlServer {
  close(): Promise<void>;
}

export async function serveControl(
  agent: AgentAccess,
  keyPath: string,
  o: ServeOptions,
): Promise<ControlServer> {
  const path = controlPath(keyPath);
  const unix = process.platform !== 'win32';
  if (unix) preparePath(path, o.log);
  const idleMs = o.idleMs ?? 5_000;
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    try {
      serveConnection(socket, agent, o, idleMs);
    } catch (err) {
      o.log.warn('control connection failed', { error: errorMessage(err) });
      socket.destroy();
    }
  });
  server.maxConnections = o.maxConnections ?? 32;
  server.on('error', (err) => o.log.warn('control socket error', { error: errorMessage(err) }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // bind() happens inside listen(): under umask 0177 the socket is born 0600, with no window at 0755.
    const umask = unix ? setUmask(0o177) : undefined;
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      if (umask !== undefined) setUmask(umask);
    }
  });
  if (unix) chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Connections still open end too (a client waiting on a self-test round), or close would wait.
        for (const s of open) s.destroy();
      }),
  };
}

/** process.umask, where a process may set it (not in a worker thread). */
function setUmask(mask: number): number | undefined {
  try {
    return process.umask(mask);
  } catch {
    return undefined;
  }
}

function serveConnection(socket: Socket, agent: AgentAccess, o: ServeOptions, idleMs: number): void {
  let buf = '';
  let taken = false;
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  // A deadline, not an idle timer: the whole line within `idleMs` of connecting. A half line then
  // silence is closed, and so is one dripped a byte at a time (each byte would restart an idle timer,
  // and a few such clients would hold every connection for hours).
  let deadline = setTimeout(() => socket.destroy(), idleMs);
  socket.once('close', () => clearTimeout(deadline));
  socket.on('data', (chunk: string) => {
    if (taken) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl < 0) {
      if (buf.length > MAX_REQUEST) socket.destroy();
      return;
    }
    taken = true;
    // The request is in: a self-test may take minutes, and that wait is the agent's, not the client's.
    clearTimeout(deadline);
    socket.pause();
    const line = buf.slice(0, nl);
    buf = '';
    const send = (r: Omit<ControlReply, 'paused'>) => {
      if (socket.destroyed) return;
      const holds = agent.holds().map(holdView);
      socket.end(`${JSON.stringify({ ...r, paused: holds[0] ?? null, holds })}\n`);
      // Answered: a client that keeps its side open (never closes) would hold its connection for good.
      deadline = setTimeout(() => socket.destroy(), idleMs);
    };
    if (line.length > MAX_REQUEST)
      return send({ ok: false, error: `a request is at most ${MAX_REQUEST} bytes` });
    const parsed = parseRequest(line);
    if ('error' in parsed) return send({ ok: false, error: parsed.error });
    handle(parsed.req, agent, o).then(send, (err: unknown) => send({ ok: false, error: errorMessage(err) }));
  });
}

async function handle(
  req: ControlRequest,
  agent: AgentAccess,
  o: ServeOptions,
): Promise<Omit<ControlReply, 'paused'>> {
  switch (req.cmd) {
    case 'pause': {
      const bad = req.until !== undefined ? checkUntil(req.until) : undefined;
      if (bad) return { ok: false, error: bad };
      // Folded on the way in: the reason reaches logs, status, alerts and other terminals.
      const reason = req.reason === undefined ? undefined : engineText(req.reason, MAX_REASON).trim();
      agent.pause({
        ...(reason ? { reason } : {}),
        ...(req.until !== undefined ? { until: new Date(req.until) } : {}),
      });
      return saved(o.store, 'a restart would forget it');
    }
    case 'resume':
      agent.resume();
      // pause.json still holds the pause the resume could not remove.
      return saved(o.store, 'a restart may pause the agent again');
    case 'state':
      return { ok: true, selftest: agent.selftestResults() };
    case 'selftest':
      return { ok: true, selftest: await agent.selftest() };
    case 'update': {
      const a = o.update
        ? await o.update(req.version)
        : { ok: false as const, why: 'this agent has no updater' };
      return a.ok
        ? { ok: true, update: { version: req.version, drainTimeoutS: a.drainTimeoutS } }
        : { ok: false, error: engineText(a.why, 300) };
    }
  }
}

/** Done; said so, with what a restart would then do, when the pause state could not be saved. */
async function saved(store: PauseStore, restart: string): Promise<Omit<ControlReply, 'paused'>> {
  const s = await store.settled();
  return s.saved
    ? { ok: true }
    : { ok: true, warning: `the pause state could not be saved to ${store.path} (${s.error}): ${restart}` };
}
