import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { type SelfTestResult, UsepodError } from '@usepod-agent/core';
import { type ControlReply, type ControlRequest, controlPath } from './protocol.js';

/** The longest reply read: a self-test round of many models, with room to spare. */
const MAX_REPLY = 4 * 1024 * 1024;

/** Sends one request to the agent running with this key; `timeoutMs` bounds a quiet socket. */
export function control(keyPath: string, req: ControlRequest, timeoutMs = 5_000): Promise<ControlReply> {
  const path = controlPath(keyPath);
  return new Promise((resolve, reject) => {
    const open = process.platform === 'win32' ? undefined : anyoneWrites(dirname(path));
    // The agent does not serve such a folder; what listens there may be any user's, and its answer a lie.
    if (open) return reject(new UsepodError('USEPOD_AGENT_NOT_RUNNING', open));
    const socket = connect(path);
    let buf = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer in ${timeoutMs / 1000} s`)));
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REPLY) socket.destroy(new Error('the answer is too long'));
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

/** Why the socket in `dir` cannot be trusted to be the agent's: any user may write the folder. */
function anyoneWrites(dir: string): string | undefined {
  let d: ReturnType<typeof statSync>;
  try {
    d = statSync(dir, { throwIfNoEntry: false });
  } catch {
    return undefined; // Not ours to read: connecting says why.
  }
  if (!d || (d.mode & 0o002) === 0) return undefined;
  const mode = (d.mode & 0o7777).toString(8).padStart(4, '0');
  return `${dir} can be written by any user (mode ${mode}), so its control socket may be anyone's: run chmod 700 ${dir}, then restart the agent`;
}

/** The running agent's last self-tests, or none when no agent answers (quickly: 2 s). */
export function runningSelfTests(keyPath: string): Promise<SelfTestResult[]> {
  return control(keyPath, { cmd: 'state' }, 2_000).then(
    (r) => r.selftest ?? [],
    () => [],
  );
}
