import { hostname } from 'node:os';
import { definePlugin, errorMessage, type PluginContext } from '@usepod-agent/core';
import { ledgerFile } from '@usepod-agent/plugin-ledger';
import { z } from 'zod';
import { Assets } from './assets.js';
import { EarningsReader } from './earnings.js';
import { type DashboardSection, Fleet, ownRow } from './fleet.js';
import { EventStreams, readJson, sendJson } from './http.js';
import { Observed, pageState } from './state.js';

export type { EarningsSeries } from './earnings.js';
export type { FleetRow } from './fleet.js';
export type { PageState } from './state.js';

/** `[dashboard]`: on unless `enabled = false`; `fleet` lists other agents for one table. */
export const dashboardSection = z.strictObject({
  enabled: z.boolean().default(true),
  /** This agent's name in the fleet table (default: the machine's host name). */
  name: z.string().min(1).max(60).optional(),
  fleet: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(60),
        /** The other agent's status server, `http://HOST:PORT` (its observability.prometheus_addr). */
        url: z.url({ protocol: /^https?$/ }).refine(
          // The page shows the address, and fetch refuses one with credentials in an error that quotes it.
          (u) => !/^[a-z]+:\/\/[^/?#]*@/i.test(u),
          'an address without user:password@ (the status token in token_file is the credential)',
        ),
        /** A copy of that agent's `status.token` (beside its key). */
        token_file: z.string().min(1).optional(),
      }),
    )
    .max(100)
    .default([]),
});
export type DashboardConfig = z.output<typeof dashboardSection>;

/** A pause from the page is at most this long; the CLI takes longer ones. */
const MAX_PAUSE_MINUTES = 7 * 24 * 60;

const pauseBody = z.strictObject({
  minutes: z.number().int().min(1).max(MAX_PAUSE_MINUTES).optional(),
  reason: z.string().max(200).optional(),
});

/**
 * The operator's dashboard (issue 32) as a feature plugin, on by default: a page at `/` of the agent's
 * status server (`observability.prometheus_addr`), its JSON API and event stream, and the fleet table.
 * Core guards every route (Host, token, Origin, body size); this plugin reads the agent only through
 * its context (`ctx.agent.status()`, `jobs()`, the observation stream) and the ledger through
 * `@usepod-agent/plugin-ledger`'s queries, read-only, on a worker thread.
 */
export default definePlugin(() => ({
  name: '@usepod-agent/plugin-dashboard',
  apiVersion: 1,
  sections: ['dashboard'],
  apply(hooks, ctx) {
    const cfg = ctx.section('dashboard', dashboardSection) ?? dashboardSection.parse({});
    if (!cfg.enabled) return;
    const observed = new Observed();
    const earnings = new EarningsReader(ledgerFile(ctx.config), ctx.config);
    const fleet = new Fleet(cfg.fleet);
    const assets = new Assets();
    const state = () => pageState(ctx.agent.status(), ctx.agent.jobs(), observed);
    const streams = new EventStreams(() => JSON.stringify(state()));
    const name = cfg.name ?? hostname();

    hooks.onEvent.tap('dashboard', (e) => {
      observed.hear(e);
      if (e.type === 'job_end') earnings.touch();
      streams.nudge();
    });
    ctx.statusSection('dashboard', (): DashboardSection => {
      const j = observed.lastJobs[0];
      return {
        last_job: j ? { at: j.at, model: j.model, outcome: j.outcome } : null,
        alerts: [...observed.notices.values()].map((n) => n.title),
      };
    });

    // The page's files hold no data: they load without the token, which the page keeps from the
    // address's fragment and sends as a header (never a cookie: browsers send those to every port).
    for (const file of Assets.FILES)
      ctx.statusRoute('GET', file.path, (_req, res) => assets.serve(file, res), { auth: 'none' });
    ctx.statusRoute('GET', '/api/state', (_req, res) => sendJson(res, 200, state()));
    // An EventSource cannot send a header: its URL carries the token, to this origin only.
    ctx.statusRoute('GET', '/api/events', (req, res) => streams.open(req, res), { auth: 'bearer-or-query' });
    ctx.statusRoute('GET', '/api/earnings', async (_req, res) => sendJson(res, 200, await earnings.read()));
    ctx.statusRoute('GET', '/api/fleet', async (_req, res) => {
      const own = ownRow(name, ctx.agent.status());
      sendJson(res, 200, { rows: fleet.size === 0 ? [own] : [own, ...(await fleet.read())] });
    });
    ctx.statusRoute('POST', '/api/pause', (req, res) => pause(ctx, readJson(req.body, pauseBody), res));
    ctx.statusRoute('POST', '/api/resume', (_req, res) => {
      ctx.agent.resume();
      ctx.log.info('resumed from the dashboard');
      sendJson(res, 200, { ok: true });
    });
    ctx.statusRoute('POST', '/api/selftest', async (_req, res) => {
      try {
        const results = await ctx.agent.selftest();
        sendJson(res, 200, {
          ok: true,
          results: results.map((r) => ({
            backend: r.backend,
            model: r.model,
            ok: r.ok,
            ttft_ms: r.ttftMs ?? null,
            tokens_per_second: r.tokensPerSecond ?? null,
            error: r.error ?? null,
          })),
        });
      } catch (err) {
        sendJson(res, 409, { ok: false, error: errorMessage(err) });
      }
    });

    hooks.onClose.tapPromise('dashboard', async () => {
      streams.close();
      await earnings.close();
    });
  },
}));

function pause(
  ctx: PluginContext,
  body: z.output<typeof pauseBody> | { error: string },
  res: Parameters<typeof sendJson>[0],
): void {
  if ('error' in body) {
    sendJson(res, 400, { ok: false, error: body.error });
    return;
  }
  const until = body.minutes ? new Date(Date.now() + body.minutes * 60_000) : undefined;
  const reason = body.reason?.trim() || 'paused from the dashboard';
  ctx.agent.pause({ reason, ...(until ? { until } : {}) });
  ctx.log.info('paused from the dashboard', { ...(until ? { until: until.toISOString() } : {}) });
  sendJson(res, 200, { ok: true, until: until?.toISOString() ?? null });
}
