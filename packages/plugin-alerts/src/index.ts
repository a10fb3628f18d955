import { hostname } from 'node:os';
import { type AgentEvent, definePlugin, type JobOutcome, type Logger } from '@usepod-agent/core';
import { type AlertConfig, type AlertEvent, alertsSection, readAlerts } from './config.js';
import { Delivery, type DeliveryTiming } from './deliver.js';
import type { Alert } from './formats.js';
import { draftOf } from './messages.js';

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
 * every plugin has (`onEvent`, `onJobEnd`, `afterAuth`, `onClose`): nothing here is on a job's path.
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
    const targets: Target[] = entries.map((cfg) => ({
      cfg,
      delivery: new Delivery(cfg, log, options?.timing),
      wants: (e) => cfg.events.includes(e),
    }));
    log.info('alerts on', { webhooks: targets.map((t) => t.delivery.target).join(', ') });
    const host = hostname();
    let providerId: string | undefined;
    const alert = (a: Omit<Alert, 'host' | 'providerId' | 'at'>, to: readonly Target[]) => {
      const full: Alert = { ...a, host, providerId, at: new Date().toISOString() };
      for (const t of to) t.delivery.send(full);
    };
    const wanting = (e: AlertEvent) => targets.filter((t) => t.wants(e));

    // Disconnected longer than each webhook allows; "back" only to those that were told.
    let online = false;
    let offlineSince = Date.now();
    let lastWhy = 'not connected yet';
    const offlineTimers = new Map<Target, NodeJS.Timeout>();
    const toldOffline = new Set<Target>();
    const armOffline = () => {
      for (const t of wanting('disconnected')) {
        clearTimeout(offlineTimers.get(t));
        const timer = setTimeout(() => {
          toldOffline.add(t);
          alert(
            {
              event: 'disconnected',
              severity: 'critical',
              resolved: false,
              title: `usepod-agent on ${host} is not connected`,
              message: `No session with the coordinator for ${minutes(Date.now() - offlineSince)}: ${lastWhy}. Jobs cannot reach this machine.`,
              details: { since: new Date(offlineSince).toISOString(), why: lastWhy },
            },
            [t],
          );
        }, t.cfg.disconnected_after_s * 1000);
        timer.unref();
        offlineTimers.set(t, timer);
      }
    };
    armOffline();

    // No job served for idle_after_h while connected and not paused.
    let paused = false;
    let lastServed = Date.now();
    const idleTimers = new Map<Target, NodeJS.Timeout>();
    const toldIdle = new Set<Target>();
    const armIdle = (t: Target, ms = t.cfg.idle_after_h * 3_600_000) => {
      clearTimeout(idleTimers.get(t));
      const timer = setTimeout(() => {
        if (!online || paused) return armIdle(t); // expected silence: look again a full period later
        toldIdle.add(t);
        alert(
          {
            event: 'idle',
            severity: 'warning',
            resolved: false,
            title: `usepod-agent on ${host} served no job for ${hours(Date.now() - lastServed)}`,
            message:
              'It is connected and not paused, yet no job came. Check the prices (`usepod-agent doctor`) and what is advertised (`usepod-agent status`).',
            details: { last_job: new Date(lastServed).toISOString() },
          },
          [t],
        );
      }, ms);
      timer.unref();
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
            title: `usepod-agent on ${host} is serving jobs again`,
            message: `A job for ${o.model} was served.`,
            details: { model: o.model },
          },
          told,
        );
    };

    hooks.onEvent.tap('alerts', (e: AgentEvent) => {
      switch (e.type) {
        case 'job_end':
          return served(e.job);
        case 'connected': {
          online = true;
          for (const timer of offlineTimers.values()) clearTimeout(timer);
          const told = [...toldOffline];
          toldOffline.clear();
          if (told.length > 0)
            alert(
              {
                event: 'disconnected',
                severity: 'info',
                resolved: true,
                title: `usepod-agent on ${host} is connected again`,
                message: `Back online after ${minutes(Date.now() - offlineSince)}.`,
                details: { coordinator: e.coordinator },
              },
              told,
            );
          return;
        }
        case 'disconnected':
          online = false;
          offlineSince = Date.now();
          lastWhy = e.why;
          armOffline();
          return;
        case 'auth_refused':
          lastWhy = `the coordinator refused this agent's key: ${e.why}`;
          break;
        case 'paused':
          paused = true;
          break;
        case 'resumed':
          paused = e.paused;
          break;
      }
      const draft = draftOf(e, host);
      if (draft) alert(draft, wanting(draft.event));
    });

    hooks.onClose.tapPromise('alerts', async () => {
      for (const timer of [...offlineTimers.values(), ...idleTimers.values()]) clearTimeout(timer);
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
