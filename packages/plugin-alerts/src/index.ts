import { hostname } from 'node:os';
import {
  type AgentEvent,
  definePlugin,
  type JobOutcome,
  type Logger,
  type LongTimer,
  longTimeout,
} from '@usepod-agent/core';
import { type AlertConfig, type AlertEvent, alertsSection, readAlerts } from './config.js';
import { Delivery, type DeliveryTiming } from './deliver.js';
import { exposedConfig } from './exposure.js';
import type { Alert } from './formats.js';
import { draftOf } from './messages.js';
import { type Text, text } from './text.js';

export {
  ALERT_EVENTS,
  type AlertConfig,
  type AlertEvent,
  alertSchema,
  alertsSection,
  FORMATS,
  type Format,
  readAlerts,
  safeTarget,
} from './config.js';
export type { DeliveryResult } from './deliver.js';
export { type Alert, requestFor } from './formats.js';
export { sendTestAlerts } from './test-alert.js';

/**
 * Alerts (issue 19): tells the owner, on a webhook, when something needs them: the agent disconnected
 * for longer than they allow, its key refused, a backend down, a model withdrawn by its self-tests,
 * paused and resumed by the GPU rule, no job for hours, the token budget spent. Built only on the hooks
 * every plugin has (`onEvent`, `afterAuth`, `onClose`): nothing here is on a job's path.
 * Reads `[[alerts]]` from the agent's config; with none it does nothing.
 */

export interface AlertsOptions {
  /** Entries to use instead of the config's `[[alerts]]` (embedding code). */
  alerts?: unknown[];
  /** Retry timing (tests shorten it). */
  timing?: DeliveryTiming;
  /** How long `onClose` waits for alerts still queued (default 3 s; core bounds the tap at 5 s). */
  flushMs?: number;
}

interface Target {
  cfg: AlertConfig;
  delivery: Delivery;
  wants: (e: AlertEvent) => boolean;
}

export default definePlugin((options: AlertsOptions | undefined) => ({
  name: '@usepod-agent/plugin-alerts',
  apiVersion: 1,
  sections: ['alerts'],
  apply(hooks, ctx) {
    // Claimed even when entries are passed directly: [[alerts]] is this plugin's section.
    const section = ctx.section('alerts', alertsSection);
    const entries = options?.alerts ? readAlerts(options.alerts, ctx.config.source) : (section ?? []);
    if (entries.length === 0) return;
    const log: Logger = ctx.log;
    // Entries from the config file: their URLs are secrets that file must keep (exposure.ts).
    const source = options?.alerts ? undefined : ctx.config.source;
    const exposed = exposedConfig(source);
    if (exposed) log.warn(`${exposed.detail}; run: ${exposed.fix}`);
    ctx.doctorCheck('alerts', () => {
      const now = exposedConfig(source);
      return [
        now
          ? { name: 'alerts', level: 'warn', ...now }
          : { name: 'alerts', level: 'ok', detail: `${entries.length} webhook(s)` },
      ];
    });
    const targets: Target[] = entries.map((cfg) => ({
      cfg,
      delivery: new Delivery(cfg, log, options?.timing),
      wants: (e) => cfg.events.includes(e),
    }));
    log.info('alerts on', { webhooks: targets.map((t) => t.delivery.target).join(', ') });
    const host = hostname();
    let providerId: string | undefined;
    const alert = (a: Omit<Alert, 'host' | 'providerId' | 'at'>, to: readonly Target[]) => {
      if (to.length === 0) return;
      log.debug('alert', { event: a.event, resolved: a.resolved, webhooks: to.length });
      const full: Alert = { ...a, host, providerId, at: new Date().toISOString() };
      for (const t of to) t.delivery.send(full);
    };
    const wanting = (e: AlertEvent) => targets.filter((t) => t.wants(e));

    // Disconnected longer than each webhook allows; "back" only to those told, once the session has
    // held min(disconnected_after_s, 1 min). A shorter session is a flap: the time offline keeps counting,
    // so a coordinator (or a network) that drops every session at once is still told of, and only once.
    let online = false;
    let connectedAt: number | undefined;
    let lastWhy: Text | string = 'not connected yet';
    interface Offline {
      since: number;
      told: boolean;
      timer?: LongTimer;
      back?: LongTimer;
    }
    const offline = new Map<Target, Offline>();
    const holdMs = (t: Target) => Math.min(60_000, t.cfg.disconnected_after_s * 1000);
    const armOffline = (t: Target, o: Offline) => {
      o.timer?.cancel();
      o.timer = longTimeout(
        () => {
          o.told = true;
          alert(
            {
              event: 'disconnected',
              severity: 'critical',
              resolved: false,
              title: text`usepod-agent on ${host} is not connected`,
              message: text`No session with the coordinator for ${minutes(Date.now() - o.since)}: ${lastWhy}. Jobs cannot reach this machine.`,
              details: { since: new Date(o.since).toISOString(), why: String(lastWhy) },
            },
            [t],
          );
        },
        o.since + t.cfg.disconnected_after_s * 1000 - Date.now(),
      );
    };
    for (const t of wanting('disconnected')) {
      const o: Offline = { since: Date.now(), told: false };
      offline.set(t, o);
      armOffline(t, o);
    }

    // No job served for idle_after_h while connected and not paused.
    let paused = false;
    let lastServed = Date.now();
    const idleTimers = new Map<Target, LongTimer>();
    const toldIdle = new Set<Target>();
    const armIdle = (t: Target, ms = t.cfg.idle_after_h * 3_600_000) => {
      idleTimers.get(t)?.cancel();
      const timer = longTimeout(() => {
        if (!online || paused) return armIdle(t); // expected silence: look again a full period later
        toldIdle.add(t);
        alert(
          {
            event: 'idle',
            severity: 'warning',
            resolved: false,
            title: text`usepod-agent on ${host} served no job for ${hours(Date.now() - lastServed)}`,
            message: text`It is connected and not paused, yet no job came. Check the prices (\`usepod-agent doctor\`) and what is advertised (\`usepod-agent status\`).`,
            details: { last_job: new Date(lastServed).toISOString() },
          },
          [t],
        );
      }, ms);
      idleTimers.set(t, timer);
    };
    for (const t of wanting('idle')) armIdle(t);

    hooks.afterAuth.tap('alerts', (s) => {
      providerId = s.providerId;
    });

    const served = (o: JobOutcome) => {
      if (o.outcome !== 'done') return;
      lastServed = Date.now();
      const told = [...toldIdle];
      toldIdle.clear();
      for (const t of wanting('idle')) armIdle(t);
      if (told.length > 0)
        alert(
          {
            event: 'idle',
            severity: 'info',
            resolved: true,
            title: text`usepod-agent on ${host} is serving jobs again`,
            message: text`A job for ${o.model} was served.`,
            details: { model: o.model },
          },
          told,
        );
    };

    hooks.onEvent.tap('alerts', (e: AgentEvent) => {
      switch (e.type) {
        case 'job_end':
          return served(e.job);
        case 'connected':
          online = true;
          connectedAt = Date.now();
          for (const [t, o] of offline) {
            o.timer?.cancel();
            if (!o.told) continue;
            o.back?.cancel();
            o.back = longTimeout(() => {
              o.told = false;
              alert(
                {
                  event: 'disconnected',
                  severity: 'info',
                  resolved: true,
                  title: text`usepod-agent on ${host} is connected again`,
                  message: text`Back online after ${minutes(Date.now() - o.since)}.`,
                  details: { coordinator: e.coordinator },
                },
                [t],
              );
            }, holdMs(t));
          }
          return;
        case 'disconnected': {
          online = false;
          const now = Date.now();
          const held = connectedAt === undefined ? Number.POSITIVE_INFINITY : now - connectedAt;
          connectedAt = undefined;
          lastWhy = e.why;
          for (const [t, o] of offline) {
            o.back?.cancel();
            if (o.told) continue; // told it is down and not yet that it is back: nothing new
            if (held >= holdMs(t)) o.since = now;
            armOffline(t, o);
          }
          return;
        }
        case 'auth_refused':
          lastWhy = text`the coordinator refused this agent's key: ${e.why}`;
          break;
        case 'paused':
          // A hold scoped to some backends (a hot GPU) leaves the agent serving.
          if (e.backends === undefined) paused = true;
          break;
        case 'resumed':
          paused = e.paused;
          break;
      }
      const draft = draftOf(e, host);
      if (draft) alert(draft, wanting(draft.event));
    });

    hooks.onClose.tapPromise('alerts', async () => {
      for (const o of offline.values()) for (const timer of [o.timer, o.back]) timer?.cancel();
      for (const timer of idleTimers.values()) timer.cancel();
      await Promise.all(targets.map((t) => t.delivery.close(options?.flushMs ?? 3_000)));
    });
  },
}));

function minutes(ms: number): string {
  const m = Math.round(ms / 60_000);
  return m < 1 ? `${Math.round(ms / 1000)} s` : `${m} min`;
}

function hours(ms: number): string {
  const h = ms / 3_600_000;
  return h < 1 ? minutes(ms) : `${Math.round(h * 10) / 10} h`;
}
