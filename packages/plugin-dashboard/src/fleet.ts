import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  type AgentStatus,
  engineText,
  readBoundedText,
  readTokenFile,
  statusProof,
} from '@usepod-agent/core';
import { Observed, stateLine } from './state.js';

/**
 * The fleet table (issue 32): each agent of `[dashboard] fleet` asked for its `/status` with its token,
 * one row each. A remote agent is someone else's machine: its answer is bounded (size, time), checked
 * field by field and folded before it reaches the page; a stopped one is a row saying so.
 */
export interface FleetEntry {
  name: string;
  url: string;
  token_file?: string | undefined;
}

export interface FleetRow {
  name: string;
  url: string;
  reachable: boolean;
  error: string | null;
  state: string | null;
  title: string | null;
  models: string[];
  in_flight: number | null;
  today_usdc: number | null;
  last_job: { at: string; model: string; outcome: string } | null;
  alerts: string[];
}

/** More than any agent's /status (a few KB per backend): past it, the answer is not one. */
const MAX_BYTES = 1024 * 1024;
const TIMEOUT_MS = 3_000;
/** Asked again at most this often, however many pages are open. */
const FRESH_MS = 5_000;

/** The dashboard's own status section: what a fleet table needs that `/status` has nowhere else. */
export interface DashboardSection {
  last_job: { at: string; model: string; outcome: string } | null;
  alerts: string[];
}

export class Fleet {
  readonly #entries: readonly FleetEntry[];
  #cached: { at: number; rows: FleetRow[] } | undefined;
  #pending: Promise<FleetRow[]> | undefined;

  constructor(entries: readonly FleetEntry[]) {
    this.#entries = entries;
  }

  get size(): number {
    return this.#entries.length;
  }

  read(now = Date.now()): Promise<FleetRow[]> {
    const c = this.#cached;
    if (c && now - c.at < FRESH_MS) return Promise.resolve(c.rows);
    this.#pending ??= Promise.all(this.#entries.map((e) => fetchRow(e)))
      .then((rows) => {
        this.#cached = { at: Date.now(), rows };
        return rows;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }
}

/** This agent's own row, from what the page already has. */
export function ownRow(name: string, s: AgentStatus | undefined): FleetRow {
  if (!s) return { ...emptyRow(name, ''), error: 'starting' };
  return rowOf(name, '(this agent)', s);
}

function emptyRow(name: string, url: string): FleetRow {
  return {
    name,
    url,
    reachable: false,
    error: null,
    state: null,
    title: null,
    models: [],
    in_flight: null,
    today_usdc: null,
    last_job: null,
    alerts: [],
  };
}

async function fetchRow(e: FleetEntry): Promise<FleetRow> {
  const row = emptyRow(e.name, e.url);
  let token: string | undefined;
  if (e.token_file) {
    // Read on the event loop, so never blocking (a FIFO) nor whole (a device, a huge file): core's reader.
    const read = readTokenFile(e.token_file, { follow: true });
    if (read.kind !== 'token') {
      const why =
        read.kind === 'unsafe' ? read.why : read.kind === 'missing' ? 'ENOENT' : 'it holds no token';
      return { ...row, error: `its token_file cannot be read (${why})` };
    }
    token = read.token;
  }
  // One deadline for the answer and its body (readBoundedText: fetch alone may lose it mid-body).
  const deadline = AbortSignal.timeout(TIMEOUT_MS);
  try {
    // Sent only to a server that proves it holds the token, as the page does (core's /api/proof): while
    // that agent restarts, another user of its machine may hold its port.
    const unproven = token === undefined ? undefined : await disproof(e.url, token, deadline);
    if (unproven) return { ...row, error: unproven };
    const res = await fetch(new URL('/status', e.url), {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: deadline,
      redirect: 'error',
    });
    if (res.status === 401) {
      await res.body?.cancel();
      return { ...row, error: 'refused: its token_file does not hold its status token' };
    }
    if (!res.ok) {
      await res.body?.cancel();
      return { ...row, error: `unreachable: HTTP ${res.status}` };
    }
    const body = JSON.parse(await readBoundedText(res, MAX_BYTES, deadline)) as unknown;
    if (!isStatus(body)) return { ...row, error: 'answered, but not with an agent status' };
    return rowOf(e.name, e.url, body);
  } catch (err) {
    const e2 = err as Error & { cause?: { code?: string } };
    const why =
      e2.name === 'TimeoutError' ? `no answer in ${TIMEOUT_MS / 1000} s` : (e2.cause?.code ?? e2.message);
    return { ...row, error: `unreachable: ${engineText(String(why), 120)}` };
  }
}

/** Why the server at `url` did not prove it holds `token`, or undefined when it did. */
async function disproof(url: string, token: string, signal: AbortSignal): Promise<string | undefined> {
  const nonce = randomBytes(16).toString('hex');
  const res = await fetch(new URL(`/api/proof?nonce=${nonce}`, url), { signal, redirect: 'error' });
  let text = '';
  if (res.ok) text = await readBoundedText(res, 1024, signal);
  else await res.body?.cancel();
  let proof: unknown;
  try {
    proof = (JSON.parse(text) as { proof?: unknown }).proof;
  } catch {}
  const want = Buffer.from(statusProof(token, nonce)!, 'hex');
  const got =
    typeof proof === 'string' && /^[0-9a-f]{64}$/.test(proof) ? Buffer.from(proof, 'hex') : undefined;
  if (got && timingSafeEqual(got, want)) return undefined;
  return res.status === 404
    ? 'not sent its token: it cannot prove it holds it (an agent older than this one; update it)'
    : 'not sent its token: it did not prove it holds it (another process on its port, or token_file is not its token)';
}

function rowOf(name: string, url: string, s: AgentStatus): FleetRow {
  const line = stateLine(s, new Observed());
  const dash = (s.sections as { dashboard?: Partial<DashboardSection> } | undefined)?.dashboard;
  const ledger = (s.sections as { ledger?: { today?: { earnings_usdc?: unknown } } } | undefined)?.ledger;
  const today = ledger?.today?.earnings_usdc;
  const lastJob = dash?.last_job;
  const alerts: string[] = [];
  for (const b of s.backends.slice(0, 20)) {
    if (!b.healthy) alerts.push(`engine ${b.label} down`);
    for (const m of (Array.isArray(b.models) ? b.models : []).slice(0, 50))
      if (m.selftest?.withdrawn) alerts.push(`${m.id} withdrawn`);
  }
  if (Array.isArray(dash?.alerts)) alerts.push(...dash.alerts.filter((a) => typeof a === 'string'));
  return {
    name,
    url,
    reachable: true,
    error: null,
    state: line.code,
    title: engineText(`${line.title}${line.code === 'online' ? '' : `: ${line.detail}`}`, 200),
    models: [...new Set(s.models.map((m) => engineText(String(m.model_id), 120)))].slice(0, 20),
    in_flight: finite(s.jobs.in_flight),
    today_usdc: finite(today),
    last_job:
      lastJob && typeof lastJob === 'object' && typeof lastJob.at === 'string'
        ? {
            at: engineText(lastJob.at, 40),
            model: engineText(String(lastJob.model), 120),
            outcome: engineText(String(lastJob.outcome), 20),
          }
        : null,
    alerts: alerts.slice(0, 10).map((a) => engineText(String(a), 160)),
  };
}

function finite(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/** The fields a row is made of, with their types: anything else is not an agent's status. */
function isStatus(v: unknown): v is AgentStatus {
  const s = v as Partial<AgentStatus> | null;
  return (
    !!s &&
    typeof s === 'object' &&
    typeof s.state === 'string' &&
    typeof s.coordinator === 'string' &&
    Array.isArray(s.backends) &&
    s.backends.every((b) => !!b && typeof b === 'object' && typeof b.label === 'string') &&
    Array.isArray(s.models) &&
    s.models.every((m) => !!m && typeof m === 'object') &&
    Array.isArray(s.holds) &&
    !!s.jobs &&
    typeof s.jobs === 'object' &&
    (s.paused === null || (typeof s.paused === 'object' && typeof s.paused?.reason === 'string'))
  );
}
