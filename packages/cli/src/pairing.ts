import { AGENT_VERSION, errorMessage, readBoundedText, UsepodError } from '@usepod-agent/core';
import {
  checkIssueAnswer,
  checkPollAnswer,
  type IssueAnswer,
  type ModelConfig,
  type PollAnswer,
  redactor,
} from '@usepod-agent/core/cli';

/**
 * The agent side of device-flow pairing (PROTOCOL.md section 9).
 */
export const PRODUCTION_BASE = 'https://api.usepod.ai';

export type { ModelConfig };
export type IssueResponse = IssueAnswer;
export type PollResponse = PollAnswer;

export interface PollCapabilities {
  backends: { kind: string; url: string; models: string[] }[];
  agent_version: string;
}

/** `wss://<host>/provider/connect` from the HTTPS base (`ws://` for a plain-HTTP local one). */
export function coordinatorUrlFor(base: string): string {
  const u = new URL(base);
  const scheme = u.protocol === 'http:' ? 'ws:' : 'wss:';
  return `${scheme}//${u.host}/provider/connect`;
}

/** The page where the operator enters the code. */
export function pairPageFor(base: string): string {
  const u = new URL(base);
  if (u.origin === PRODUCTION_BASE) return 'https://usepod.ai/host/pair';
  return `${u.origin}/host/pair`;
}

/** A pairing answer is a few hundred bytes of JSON. */
const MAX_ANSWER_BYTES = 1024 * 1024;

async function post(base: string, path: string, body: unknown): Promise<unknown> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  let res: Response;
  const deadline = AbortSignal.timeout(15_000);
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `usepod-agent/${AGENT_VERSION}` },
      body: JSON.stringify(body),
      signal: deadline,
      // Not followed: a redirect would carry the poll token (in the body) to wherever it names, over
      // plain HTTP too. The protocol has none; the coordinator's own address is what --coordinator takes.
      redirect: 'manual',
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? errorMessage(err);
    throw new UsepodError(
      'USEPOD_PAIRING_FAILED',
      `cannot reach ${new URL(url).origin}: ${cause} (check --coordinator and your network)`,
      {
        user: true,
        cause: err,
      },
    );
  }
  // The coordinator's answer is untrusted too: bounded in size and in time (readBoundedText).
  let text: string;
  try {
    text = await readBoundedText(res, MAX_ANSWER_BYTES, deadline);
  } catch (err) {
    const status = res.ok ? '' : ` (HTTP ${res.status})`;
    throw new UsepodError(
      'USEPOD_PAIRING_FAILED',
      `${path} answer${status} could not be read: ${errorMessage(err)}`,
      { user: true },
    );
  }
  if (res.status >= 300 && res.status < 400) {
    throw new UsepodError(
      'USEPOD_PAIRING_FAILED',
      `${path} answered HTTP ${res.status}, a redirect, which pairing does not follow: pass the coordinator's own address to --coordinator`,
      { user: true },
    );
  }
  if (!res.ok) {
    const detail = text.length > 200 ? `${text.slice(0, 200)}...` : text;
    throw new UsepodError(
      'USEPOD_PAIRING_FAILED',
      `${path} answered HTTP ${res.status}: ${redactor.redact(detail) || '(empty)'}`,
      {
        user: true,
      },
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsepodError('USEPOD_PAIRING_FAILED', `${path} answered with a body that is not JSON`, {
      user: true,
    });
  }
}

/** An answer that is not what PROTOCOL.md 9 says: one line naming the field, never its value. */
function checked<T>(base: string, path: string, c: { ok: true; answer: T } | { ok: false; why: string }): T {
  if (c.ok) return c.answer;
  throw new UsepodError(
    'USEPOD_PAIRING_FAILED',
    `${path} answered ${c.why}: ${new URL(base).origin} does not pair as the Use Pod coordinator does; check --coordinator`,
    { user: true },
  );
}

export async function issuePairing(base: string, agentPubkey: string): Promise<IssueResponse> {
  const path = '/v1/host/pair/issue';
  return checked(base, path, checkIssueAnswer(await post(base, path, { agent_pubkey: agentPubkey })));
}

export async function pollPairing(
  base: string,
  pollToken: string,
  capabilities: PollCapabilities,
): Promise<PollResponse> {
  const path = '/v1/host/pair/poll';
  const res = checked(
    base,
    path,
    checkPollAnswer(await post(base, path, { poll_token: pollToken, capabilities })),
  );
  if (res.status === 'active') redactor.add(res.host_token);
  return res;
}
