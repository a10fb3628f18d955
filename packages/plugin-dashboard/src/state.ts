import type { AgentEvent, AgentStatus, JobInFlight } from '@usepod-agent/core';
import { engineText } from '@usepod-agent/core';

/**
 * What the page shows, made from `ctx.agent.status()`, `ctx.agent.jobs()` and what the observation
 * stream told (the last jobs, why the session ended, the owner's notices). Only named fields are copied:
 * no config, no key, no URL with credentials, no webhook reaches the page. Strings from outside are
 * already folded by core; they are bounded again here and the page sets them as text.
 */

/** Jobs kept for "last jobs". */
const LAST_JOBS = 20;
/** Notices kept for alerts. */
const NOTICES = 10;

export interface LastJob {
  at: string;
  model: string;
  backend: string | null;
  outcome: 'done' | 'error' | 'cancelled';
  error_code: string | null;
  refusal: string | null;
  output_tokens: number;
  duration_ms: number;
}

export interface Notice {
  at: string;
  name: string;
  severity: string;
  title: string;
  message: string;
}

/** The facts the observation stream told that `/status` does not keep. */
export class Observed {
  readonly lastJobs: LastJob[] = [];
  readonly notices = new Map<string, Notice>();
  sessionSince: string | undefined;
  lastDisconnect: { at: string; why: string } | undefined;

  hear(e: AgentEvent): void {
    const now = new Date().toISOString();
    switch (e.type) {
      case 'job_end': {
        const j = e.job;
        this.lastJobs.unshift({
          at: now,
          model: text(j.model, 200),
          backend: j.backend === undefined ? null : text(j.backend, 100),
          outcome: j.outcome,
          error_code: j.errorCode ?? null,
          refusal: j.refusal ?? null,
          output_tokens: j.outputTokens,
          duration_ms: j.durationMs,
        });
        if (this.lastJobs.length > LAST_JOBS) this.lastJobs.length = LAST_JOBS;
        break;
      }
      case 'connected':
        this.sessionSince = now;
        break;
      case 'disconnected':
      case 'auth_refused':
        this.sessionSince = undefined;
        this.lastDisconnect = { at: now, why: text(e.why, 300) };
        break;
      case 'reconnect':
        // A dial that failed while offline: the latest reason is the one the operator needs.
        if (this.sessionSince === undefined) this.lastDisconnect = { at: now, why: text(e.why, 300) };
        break;
      case 'notice': {
        const key = `${e.plugin}\u0000${e.name}`;
        if (e.resolved) this.notices.delete(key);
        else {
          this.notices.delete(key);
          this.notices.set(key, {
            at: now,
            name: text(e.name, 40),
            severity: e.severity,
            title: text(e.title, 200),
            message: text(e.message, 1000),
          });
          while (this.notices.size > NOTICES) this.notices.delete(this.notices.keys().next().value!);
        }
        break;
      }
      default:
        break;
    }
  }
}

function text(s: string, max: number): string {
  return engineText(String(s), max);
}

/** One word and a sentence: why the agent earns or not. */
export interface StateLine {
  code: 'online' | 'paused' | 'yielding' | 'draining' | 'offline' | 'starting';
  title: string;
  detail: string;
}

export function stateLine(s: AgentStatus, observed: Observed): StateLine {
  if (s.state === 'stopping' || s.state === 'stopped')
    return { code: 'draining', title: 'draining', detail: 'stopping: jobs in flight finish, no new ones' };
  const hold = s.paused;
  if (hold) {
    const until = hold.until ? ` until ${hold.until}` : '';
    if (hold.by === 'gpu')
      return { code: 'yielding', title: 'yielding the GPU', detail: `${text(hold.reason, 300)}${until}` };
    const who = hold.by === 'owner' ? 'owner' : hold.by === 'schedule' ? 'quiet hours' : text(hold.by, 40);
    return {
      code: 'paused',
      title: `paused by ${who}`,
      detail: `${text(hold.reason, 300)}${until}`,
    };
  }
  if (s.state === 'online') {
    const n = s.models.length;
    return n > 0
      ? { code: 'online', title: 'online', detail: `${n} model(s) advertised to ${s.coordinator}` }
      : { code: 'online', title: 'online, nothing advertised', detail: 'no healthy engine serves a model' };
  }
  if (s.state === 'idle' || s.state === 'starting')
    return { code: 'starting', title: 'starting', detail: 'probing engines' };
  const why = observed.lastDisconnect?.why;
  return {
    code: 'offline',
    title: 'offline',
    detail: why ? `not connected (${s.state}): ${why}` : `not connected (${s.state})`,
  };
}

/** The page's state document (`/api/state`, each event of `/api/events`). */
export function pageState(s: AgentStatus | undefined, jobs: JobInFlight[], observed: Observed) {
  if (!s) return { at: new Date().toISOString(), ready: false as const };
  const advertised = new Set(s.models.map((m) => `${m.model_id}`));
  const capacity = new Map(s.models.map((m) => [m.model_id, m.max_concurrent]));
  const ledger = (s.sections as { ledger?: LedgerSection }).ledger;
  return {
    at: new Date().toISOString(),
    ready: true as const,
    agent: {
      version: s.agent_version,
      provider_id: s.provider_id,
      fingerprint: s.fingerprint,
      started_at: s.started_at,
      uptime_s: s.uptime_s,
    },
    state: stateLine(s, observed),
    holds: s.holds,
    session: {
      state: s.state,
      connected: s.connected,
      coordinator: s.coordinator,
      since: observed.sessionSince ?? null,
      last_disconnect: observed.lastDisconnect ?? null,
    },
    backends: s.backends.map((b) => ({
      label: b.label,
      kind: b.kind,
      healthy: b.healthy,
      detail: b.detail,
      in_flight: b.in_flight,
      models: b.models.map((m) => {
        const t = m.selftest;
        const withdrawn = t?.withdrawn ?? false;
        const on = advertised.has(m.id) && !withdrawn;
        return {
          id: m.id,
          context_window: m.context_window,
          advertised: on,
          why: on
            ? null
            : withdrawn
              ? `withdrawn: ${t?.job_error ?? t?.error ?? 'self-tests fail'}`
              : s.paused
                ? 'paused'
                : !b.healthy
                  ? 'engine down'
                  : 'not advertised',
          capacity: capacity.get(m.id) ?? null,
          ttft_ms: t?.ttft_ms ?? null,
          tokens_per_second: t?.tokens_per_second ?? null,
          tested_at: t?.at ?? null,
        };
      }),
    })),
    jobs: {
      in_flight: jobs.map((j) => ({
        model: text(j.model, 200),
        backend: j.backend === undefined ? null : text(j.backend, 100),
        tokens: j.events,
        age_ms: j.ageMs,
      })),
      last: observed.lastJobs,
      totals: s.jobs,
    },
    earnings: {
      since_start_usdc: s.earnings.usdc,
      today: ledger?.today ?? null,
      last_7_days: ledger?.last_7_days ?? null,
      ledger: ledger ? (ledger.file === null ? 'off' : ledger.failing ? 'failing' : 'on') : 'none',
    },
    alerts: [...observed.notices.values()].reverse(),
  };
}

export type PageState = ReturnType<typeof pageState>;

interface LedgerWindow {
  served: number;
  missed: number;
  failed: number;
  earnings_usdc: number;
}
interface LedgerSection {
  file: string | null;
  failing?: string;
  today?: LedgerWindow;
  last_7_days?: LedgerWindow;
}
