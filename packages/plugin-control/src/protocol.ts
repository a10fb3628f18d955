import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { engineText, type Hold, type SelfTestResult } from '@usepod-agent/core';
import { z } from 'zod';

/**
 * The control socket's protocol (issue 19): one JSON object on one line each way, `pause`, `resume`,
 * `state`, `selftest`, and `update` (issue 29: switch to an installed version now, through the launcher). Every request is checked here before anything acts on it (issue 28): the socket
 * is the owner's, but a script, a fuzzer or a half-written line must never reach the agent unchecked.
 */

/** Where the socket is: beside the identity key; on Windows a named pipe named after the key's path. */
export function controlPath(keyPath: string, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') {
    return `\\\\.\\pipe\\usepod-agent-${createHash('sha256').update(keyPath).digest('hex').slice(0, 16)}`;
  }
  return join(dirname(keyPath), 'agent.sock');
}

/** Where the owner's pause is kept so that it outlives a restart (removed on resume or when it ends). */
export const pauseFile = (keyPath: string) => join(dirname(keyPath), 'pause.json');

/** The longest pause with an end, core's bound on a hold (~100 years); later is a mistake, not clamped. */
export const MAX_PAUSE_MS = 100 * 365.25 * 86_400_000;
/** The longest reason a pause may carry. */
export const MAX_REASON = 200;
/** The longest request line read; more is not a request. */
export const MAX_REQUEST = 4096;

const pauseRequest = z.strictObject({
  cmd: z.literal('pause'),
  reason: z.string().max(MAX_REASON).optional(),
  /** Epoch ms; none: until resumed. Bounded against the clock where it is used (`checkUntil`). */
  until: z.number().int().optional(),
});

/** A release's version, as plugin-update names its folders: nothing else reaches a path or a log. */
export const VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}(?:-[0-9A-Za-z.-]{1,64})?$/;

const request = z.discriminatedUnion('cmd', [
  pauseRequest,
  z.strictObject({ cmd: z.literal('resume') }),
  z.strictObject({ cmd: z.literal('state') }),
  z.strictObject({ cmd: z.literal('selftest') }),
  /** `update --now`: drain and let the launcher switch to this version, installed beside the running one. */
  z.strictObject({
    cmd: z.literal('update'),
    version: z.string().regex(VERSION, 'must be a version (1.2.3)'),
  }),
]);

export type PauseRequest = z.infer<typeof pauseRequest>;
export type ControlRequest = z.infer<typeof request>;

/** A hold as a reply carries it: its texts folded (a hold's reason may come from any plugin or tool). */
export interface HoldView {
  by: string;
  reason: string;
  until: string | null;
}

export interface ControlReply {
  ok: boolean;
  /** Why the agent is paused (the owner's hold first), or null. */
  paused: HoldView | null;
  /** Every hold keeping it paused. */
  holds?: HoldView[];
  /** Each model's last self-test (`state`), or the round just run (`selftest`). */
  selftest?: SelfTestResult[];
  /** Why the request was refused (`ok: false`). */
  error?: string;
  /** Done, but something the owner should know (the pause could not be saved for a restart). */
  warning?: string;
  /** `update`: the agent drains (jobs in flight get this long) and exits for the launcher to switch. */
  update?: { version: string; drainTimeoutS: number };
}

/** What the agent's updater answers to `update` (plugin-update, over the plugins' event stream). */
export type UpdateAnswer = { ok: true; drainTimeoutS: number } | { ok: false; why: string };

/** A request line, checked: the request, or one line saying what is wrong with it. */
export function parseRequest(line: string): { req: ControlRequest } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { error: 'a request is one JSON object on one line' };
  }
  const r = request.safeParse(value);
  if (r.success) return { req: r.data };
  const issue = r.error.issues[0];
  const where = issue?.path.length ? issue.path.join('.') : 'request';
  return { error: `${where}: ${issue?.message ?? 'not a request'}`.slice(0, 200) };
}

/** A pause's end against the clock: not past, at most MAX_PAUSE_MS ahead; else why not, in one line. */
export function checkUntil(until: number, now = Date.now()): string | undefined {
  if (until <= now) return 'until is in the past';
  if (until - now > MAX_PAUSE_MS) return 'a pause can end at most 100 years from now';
  return undefined;
}

export function holdView(h: Hold): HoldView {
  return { by: engineText(h.by, 64), reason: engineText(h.reason, MAX_REASON), until: h.until ?? null };
}
