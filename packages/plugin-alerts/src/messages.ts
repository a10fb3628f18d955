import type { AgentEvent } from '@usepod-agent/core';
import type { AlertEvent } from './config.js';
import type { Alert } from './formats.js';
import { text } from './text.js';

/** An alert as an event makes it, before the host, provider and time are added. */
export type Draft = Omit<Alert, 'host' | 'providerId' | 'at'> & { event: AlertEvent };

/**
 * What the owner is told of an event the agent reports, in words: one table, one row per event type
 * that makes an alert on its own (the timed ones, `disconnected` and `idle`, are the plugin's). `undefined`:
 * nothing to tell (a pause of the owner's own, for instance). Every `${…}` is text from outside: each
 * format escapes it (`text.ts`); a line starts with the plugin's own words. A trouble and its end share a
 * `subject`, and a backend or plugin is the `source` whose rate-limit budget it spends (`budget.ts`).
 */
export function draftOf(e: AgentEvent, host: string): Draft | undefined {
  switch (e.type) {
    case 'auth_refused':
      return {
        event: 'auth_refused',
        severity: 'critical',
        resolved: false,
        title: text`usepod-agent on ${host}: the coordinator refused its key`,
        message: text`Reason given: ${e.why}. Pair again with \`usepod-agent setup\` or check the enrollment code.`,
        details: { coordinator: e.coordinator, why: e.why },
      };
    case 'backend_down':
      return {
        event: 'backend_down',
        severity: 'warning',
        resolved: false,
        title: text`usepod-agent on ${host}: backend ${e.backend} is down`,
        message: text`The ${e.kind} engine at ${e.backend} failed: ${e.detail}. Its models are no longer offered.`,
        details: { backend: e.backend, kind: e.kind, detail: e.detail },
        subject: e.backend,
        source: e.backend,
      };
    case 'backend_up':
      return {
        event: 'backend_down',
        severity: 'info',
        resolved: true,
        title: text`usepod-agent on ${host}: backend ${e.backend} is back`,
        message: text`The ${e.kind} engine at ${e.backend} answers again.`,
        details: { backend: e.backend, kind: e.kind },
        subject: e.backend,
        source: e.backend,
      };
    case 'model_withdrawn':
      return {
        event: 'model_withdrawn',
        severity: 'warning',
        resolved: false,
        title: text`usepod-agent on ${host}: ${e.model} withdrawn`,
        message:
          e.cause === 'jobs'
            ? text`Model ${e.model} on ${e.backend} failed real jobs (${e.detail}); it is not used until a self-test passes after ${e.until ?? 'its cooldown'}.`
            : text`Model ${e.model} on ${e.backend} failed its self-tests (${e.detail}); it is not offered until one passes.`,
        details: { backend: e.backend, model: e.model, detail: e.detail },
        subject: `${e.backend} ${e.model}`,
        source: e.backend,
      };
    case 'model_back':
      return {
        event: 'model_withdrawn',
        severity: 'info',
        resolved: true,
        title: text`usepod-agent on ${host}: ${e.model} is offered again`,
        message: text`Model ${e.model} on ${e.backend} passed its self-test.`,
        details: { backend: e.backend, model: e.model },
        subject: `${e.backend} ${e.model}`,
        source: e.backend,
      };
    case 'paused':
      if (e.by !== 'gpu') return undefined;
      return {
        event: 'gpu_yield',
        severity: 'info',
        resolved: false,
        title: text`usepod-agent on ${host} stepped aside`,
        message: text`Paused: ${e.reason}. No new jobs until the GPU is free again.`,
        details: { reason: e.reason },
      };
    case 'resumed':
      if (e.by !== 'gpu') return undefined;
      return {
        event: 'gpu_yield',
        severity: 'info',
        resolved: true,
        title: text`usepod-agent on ${host} is serving again`,
        message: text`The GPU has been free for the cooldown; models are offered again.`,
        details: {},
      };
    case 'budget_exhausted':
      return {
        event: 'budget_exhausted',
        severity: 'warning',
        resolved: false,
        title: text`usepod-agent on ${host} reached its token budget`,
        message: text`Jobs are turned away at limits.max_tokens_per_minute = ${e.limit}. Raise it if the engine has room.`,
        details: { limit: e.limit },
      };
    case 'notice':
      // Another plugin's words may quote an error or a path: all of it is a value, escaped per format.
      return {
        event: 'notice',
        severity: e.severity,
        resolved: e.resolved,
        title: text`usepod-agent on ${host}: ${e.title}`,
        message: text`From ${e.plugin}: ${e.message}`,
        details: { plugin: e.plugin, name: e.name },
        subject: `${e.plugin} ${e.name}`,
        source: e.plugin,
      };
    default:
      return undefined;
  }
}
