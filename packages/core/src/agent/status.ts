import type { PersistedIdentity } from '../identity/identity.js';
import type { Totals } from '../observability/metrics.js';
import type { HeartbeatStats } from '../observability/stats.js';
import type { AgentState } from '../plugins/hooks.js';
import type { Hold } from '../plugins/plugin.js';
import type { CapabilityModel } from '../protocol/frames.js';
import type { BackendState } from '../routing/discovery.js';
import type { SelfTest, SelfTestResult } from '../routing/selftest.js';
import { AGENT_VERSION } from '../version.js';
import type { AgentSnapshot, AgentStatus, StatusSelfTest } from './types.js';

/** What `snapshot()` and `/status` show, made from the agent's parts. */
export function snapshotOf(v: {
  state: AgentState;
  coordinator: string;
  identity: PersistedIdentity | undefined;
  startedAt: Date | undefined;
  inFlight: number;
  outboundBytes: number;
  backends: readonly BackendState[];
  models: CapabilityModel[];
  holds: Hold[];
  selftest?: SelfTest | undefined;
}): AgentSnapshot {
  const tested = new Map(v.selftest?.results().map((r) => [`${r.backend}\u0000${r.model}`, r]));
  return {
    state: v.state,
    coordinator: v.coordinator,
    providerId: v.identity?.providerId,
    publicKey: v.identity?.publicKey,
    agentVersion: AGENT_VERSION,
    startedAt: v.startedAt?.toISOString(),
    inFlight: v.inFlight,
    outboundBytes: v.outboundBytes,
    backends: v.backends.map((s) => ({
      label: s.backend.label,
      kind: s.backend.kind,
      url: s.backend.url,
      healthy: s.status?.healthy ?? false,
      detail: s.status?.detail,
      inFlight: s.inFlight,
      models: (s.status?.models ?? []).map((m) => {
        const selftest = tested.get(`${s.backend.label}\u0000${m.id}`);
        return {
          id: m.id,
          ...(m.contextWindow ? { contextWindow: m.contextWindow } : {}),
          ...(selftest ? { selftest } : {}),
        };
      }),
    })),
    models: v.models,
    paused: v.holds.find((h) => h.backends === undefined),
    holds: v.holds,
  };
}

export function statusOf(
  snap: AgentSnapshot,
  v: {
    fingerprint: string | undefined;
    startedAt: Date | undefined;
    totals: Totals;
    heartbeat: HeartbeatStats;
    sections: Record<string, unknown>;
  },
): AgentStatus {
  const t = v.totals;
  return {
    state: snap.state,
    connected: snap.state === 'online',
    coordinator: snap.coordinator,
    provider_id: snap.providerId ?? null,
    public_key: snap.publicKey ?? null,
    fingerprint: v.fingerprint ?? null,
    agent_version: AGENT_VERSION,
    started_at: snap.startedAt ?? null,
    uptime_s: v.startedAt ? Math.round((Date.now() - v.startedAt.getTime()) / 1000) : 0,
    backends: snap.backends.map((b) => ({
      label: b.label,
      kind: b.kind,
      url: b.url ? withoutCredentials(b.url) : null,
      healthy: b.healthy,
      detail: b.detail ?? null,
      in_flight: b.inFlight,
      models: b.models.map((m) => ({
        id: m.id,
        context_window: m.contextWindow ?? null,
        selftest: m.selftest ? statusSelfTest(m.selftest) : null,
      })),
    })),
    models: snap.models,
    paused: snap.paused
      ? { by: snap.paused.by, reason: snap.paused.reason, until: snap.paused.until ?? null }
      : null,
    holds: snap.holds.map((h) => ({
      by: h.by,
      reason: h.reason,
      until: h.until ?? null,
      since: h.since,
      ...(h.backends ? { backends: h.backends } : {}),
    })),
    jobs: {
      in_flight: snap.inFlight,
      served: t.served,
      missed: t.missed,
      failed: t.failed,
      cancelled: t.cancelled,
    },
    tokens: { input: t.inputTokens, output: t.outputTokens },
    relayed_bytes: t.bytes,
    heartbeat: v.heartbeat,
    earnings: { micro_usdc: Math.round(t.earningsMicro), usdc: Math.round(t.earningsMicro) / 1_000_000 },
    sections: v.sections,
  };
}

/**
 * `/readyz` for orchestrators: ready while authenticated with at least one model advertised and not
 * draining or paused; otherwise why not, in a few words.
 */
export function readinessOf(
  state: AgentState,
  paused: { reason: string } | undefined,
  advertised: number,
): { ready: boolean; reason?: string } {
  if (state === 'stopping' || state === 'stopped') return { ready: false, reason: 'draining' };
  if (state !== 'online') return { ready: false, reason: `not connected (${state})` };
  if (paused) return { ready: false, reason: `paused (${paused.reason})` };
  if (advertised === 0) return { ready: false, reason: 'no model advertised' };
  return { ready: true };
}

/** A self-test result as `/status` (and `backends --json`) show it: snake_case, null for none. */
export function statusSelfTest(r: SelfTestResult): StatusSelfTest {
  return {
    ok: r.ok,
    failures: r.failures,
    withdrawn: r.withdrawn,
    ejected_until: r.ejectedUntil ?? null,
    job_error: r.jobError ?? null,
    ttft_ms: r.ttftMs ?? null,
    tokens_per_second: r.tokensPerSecond ?? null,
    at: r.at,
    error: r.error ?? null,
  };
}

/**
 * An engine's address without its `user:password@`: /status is open to every local user on loopback,
 * and is what fleet peers and scrapers read; the credentials stay in the config.
 */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}
