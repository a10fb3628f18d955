import { createHash } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { type AgentAccess, errorMessage, type SelfTestResult, UsepodError } from '@usepod-agent/core';

/**
 * The local control channel of a running agent (issue 19): `pause`, `resume`, `state`, one JSON line each
 * way. A Unix socket beside the identity key, mode 0600 in the key's 0700 folder, so only the operator's
 * user (and root) can use it; on Windows a named pipe named after the key's path. Never a network port.
 */
export function controlPath(keyPath: string, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') {
    return `\\\\.\\pipe\\usepod-agent-${createHash('sha256').update(keyPath).digest('hex').slice(0, 16)}`;
  }
  return join(dirname(keyPath), 'agent.sock');
}

/** Where a pause is kept so that it outlives a restart (removed on resume or when it ends). */
export const pauseFile = (keyPath: string) => join(dirname(keyPath), 'pause.json');

export interface PauseRequest {
  cmd: 'pause';
  reason?: string;
  /** Epoch ms; none: until resumed. */
  until?: number;
}
export type ControlRequest = PauseRequest | { cmd: 'resume' } | { cmd: 'state' } | { cmd: 'selftest' };

export interface ControlReply {
  ok: boolean;
  /** Why the agent is paused (the owner's hold first), or null. */
  paused: { by: string; reason: string; until: string | null } | null;
  /** Every hold keeping it paused. */
  holds?: { by: string; reason: string; until: string | null }[];
  /** Each model's last self-test (`state`), or the round just run (`selftest`). */
  selftest?: SelfTestResult[];
  error?: string;
}

/** Applies the owner's pause kept from before a restart, if it has not ended. */
export async function restorePause(agent: AgentAccess, keyPath: string): Promise<void> {
  const text = await readFile(pauseFile(keyPath), 'utf8').catch(() => undefined);
  if (!text) return;
  try {
    const p = JSON.parse(text) as { reason?: string; until?: number };
    if (p.until !== undefined && p.until <= Date.now()) throw new Error('ended');
    agent.pause({
      ...(typeof p.reason === 'string' ? { reason: p.reason } : {}),
      ...(typeof p.until === 'number' ? { until: new Date(p.until) } : {}),
    });
  } catch {
    await rm(pauseFile(keyPath), { force: true });
  }
}

/** Keeps pause.json in step with the owner's hold (the only hold that outlives a restart). */
export async function keepOwnerPause(agent: AgentAccess, keyPath: string): Promise<void> {
  const p = agent.holds().find((h) => h.by === 'owner');
  if (!p) await rm(pauseFile(keyPath), { force: true });
  else {
    const until = p.until ? Date.parse(p.until) : undefined;
    await writeFile(
      pauseFile(keyPath),
      `${JSON.stringify({ reason: p.reason, ...(until ? { until } : {}) })}\n`,
      {
        mode: 0o600,
      },
    );
  }
}

const MAX_REQUEST = 4096;

export async function serveControl(agent: AgentAccess, keyPath: string): Promise<Server> {
  const path = controlPath(keyPath);
  // A socket left by a crashed agent: the identity lock already proved no other agent runs on this key.
  if (process.platform !== 'win32' && existsSync(path)) unlinkSync(path);
  const keep = () => keepOwnerPause(agent, keyPath);
  const server = createServer((socket) => {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) return socket.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const reply = (r: Omit<ControlReply, 'paused'>) => {
        const holds = agent.holds();
        const p = holds[0];
        socket.end(
          `${JSON.stringify({
            ...r,
            paused: p ? { by: p.by, reason: p.reason, until: p.until ?? null } : null,
            holds: holds.map((h) => ({ by: h.by, reason: h.reason, until: h.until ?? null })),
          })}\n`,
        );
      };
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as ControlRequest;
      } catch {
        return reply({ ok: false, error: 'not JSON' });
      }
      if (req.cmd === 'pause') {
        const reason = typeof req.reason === 'string' ? req.reason.slice(0, 200) : undefined;
        const until =
          typeof req.until === 'number' && Number.isFinite(req.until) ? new Date(req.until) : undefined;
        agent.pause({ ...(reason ? { reason } : {}), ...(until ? { until } : {}) });
        return keep().then(() => reply({ ok: true }));
      }
      if (req.cmd === 'resume') {
        agent.resume();
        return keep().then(() => reply({ ok: true }));
      }
      if (req.cmd === 'state') return reply({ ok: true, selftest: agent.selftestResults() });
      if (req.cmd === 'selftest') {
        return agent.selftest().then(
          (selftest) => reply({ ok: true, selftest }),
          (err: unknown) => reply({ ok: false, error: errorMessage(err) }),
        );
      }
      return reply({ ok: false, error: 'unknown command' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (process.platform !== 'win32') chmodSync(path, 0o600);
  return server;
}

/** Sends one request to the agent running with this key; `timeoutMs` bounds a quiet socket. */
export function control(keyPath: string, req: ControlRequest, timeoutMs = 5_000): Promise<ControlReply> {
  const path = controlPath(keyPath);
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buf = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer in ${timeoutMs / 1000} s`)));
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (d: string) => {
      buf += d;
    });
    socket.on('end', () => {
      try {
        resolve(JSON.parse(buf) as ControlReply);
      } catch {
        reject(new UsepodError('USEPOD_AGENT_NOT_RUNNING', `the agent at ${path} gave no answer`));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? `no agent runs with identity ${keyPath} (no control socket at ${path})`
          : err.code === 'EACCES'
            ? `${path} belongs to another user: run this as the user the agent runs as (sudo for a service)`
            : `cannot reach the agent at ${path}: ${err.message}`;
      reject(new UsepodError('USEPOD_AGENT_NOT_RUNNING', why));
    });
  });
}

/** The running agent's last self-tests, or none when no agent answers (quickly: 2 s). */
export function runningSelfTests(keyPath: string): Promise<SelfTestResult[]> {
  return control(keyPath, { cmd: 'state' }, 2_000).then(
    (r) => r.selftest ?? [],
    () => [],
  );
}
