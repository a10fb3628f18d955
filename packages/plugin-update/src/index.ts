import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentEvent, type DoctorFinding, definePlugin, errorMessage } from '@usepod-agent/core';
import { z } from 'zod';
import { entryOf, folderProblem } from '../launcher/launcher.mjs';

/** The V8 flags a release asks `run` to start with (the service and the launcher pass them). */
export { nodeFlagsOf } from '../launcher/launcher.mjs';

import { updateSection } from './config.js';
import { HealthReporter } from './health.js';
import { files, isVersion, linkedVersion, readLauncher, updateDir, versionString } from './state.js';
import { inContainer, readView, Updater, type UpdateView, underLauncher } from './updater.js';

export {
  type Companion,
  companionsBeside,
  fetchPackument,
  type Packument,
  pickCompanion,
  planCompanions,
} from './companions.js';
export { type UpdateConfig, updateSection } from './config.js';
export { type Decision, decide } from './decide.js';
export { CLI_PACKAGE, installVersion, viewRelease } from './npm.js';
export { operatorPlugins, stranded } from './ranges.js';
export { LAUNCHER_SOURCE, launcherIn, pointLink, setup } from './setup.js';
export { eligibleAt, spreadDelay } from './spread.js';
export { files, readLauncher, readUpdateState, updateDir, writeAtomic } from './state.js';
export { inContainer, readView, Updater, type UpdateView } from './updater.js';

/** `update --now` reaches the running agent through plugin-control's socket, then the plugins' stream. */
const CONTROL_PLUGIN = '@usepod-agent/plugin-control';
const nowRequest = z.object({ id: z.string().max(64), version: versionString });

/**
 * Why the running agent cannot switch to `version` now, or undefined when it can (pure, for tests): the
 * launcher must run it, the version must be installed beside it, not running already, not bad here.
 */
export function refuseNow(o: {
  version: string;
  running: string;
  underLauncher: boolean;
  container: boolean;
  installed: boolean;
  bad: { version: string; reason: string } | undefined;
  switchingTo: string | undefined;
  /** The running version is still on trial (the launcher would read its exit as a failure). */
  onTrial?: boolean;
}): string | undefined {
  if (o.container) return 'it runs in a container: updates come with the image tag';
  if (!o.underLauncher) return 'it does not run under the launcher (only the launcher can switch versions)';
  if (o.onTrial)
    return `${o.running} is still on trial (its health is being judged): try again once the launcher kept it`;
  if (o.switchingTo !== undefined && o.switchingTo !== o.version)
    return `it is already switching to ${o.switchingTo}`;
  if (o.switchingTo === o.version) return undefined;
  if (o.version === o.running) return `it already runs ${o.version}`;
  if (o.bad) return `${o.version} was rolled back on this machine: it ${o.bad.reason}`;
  if (!o.installed) return `${o.version} is not installed beside it`;
  return undefined;
}

/** For tests and embedding code: the first check's delay after the agent is first online (default 10 s). */
export interface UpdateOptions {
  firstCheckMs?: number;
}

/** The plugins' releases that come along with the latest, for a line: ` (with x 1.1.0)`. */
const along = (v: UpdateView) =>
  v.plugins.length > 0 ? ` (with ${v.plugins.map((p) => `${p.name} ${p.version}`).join(', ')})` : '';

/** A status/doctor line for a view. */
export function updateFinding(v: UpdateView): DoctorFinding {
  if (v.container)
    return { name: 'update', level: 'ok', detail: 'in a container: updates come with the image tag' };
  if (v.mode === 'off') return { name: 'update', level: 'ok', detail: `updates off (running ${v.running})` };
  const last = v.bad.at(-1);
  if (last && last.version === v.latest)
    return {
      name: 'update',
      level: 'warn',
      detail: `${last.version} was rolled back: it ${last.reason}`,
      fix: 'nothing to do: it is not installed again; a newer release is',
    };
  if (v.held) return { name: 'update', level: 'warn', detail: v.held, fix: 'update or remove that plugin' };
  if (v.error)
    return {
      name: 'update',
      level: 'warn',
      detail: `the last check failed: ${v.error}`,
      fix: 'check the registry',
    };
  if (v.pending)
    return {
      name: 'update',
      level: 'ok',
      detail: `${v.pending.version}${along(v)} ${v.pending.installed ? 'installed, switching' : `pending, not before ${v.pending.at}`}`,
    };
  if (v.latest && v.latest !== v.running && v.mode === 'notify')
    return {
      name: 'update',
      level: 'warn',
      detail: `${v.latest}${along(v)} is available (running ${v.running})`,
      fix: '`usepod-agent update --now`, or `[update] mode = "auto"`',
    };
  return { name: 'update', level: 'ok', detail: `running ${v.running}, ${v.mode} on channel ${v.channel}` };
}

/**
 * Unattended updates (issue 29), on by default in `notify` mode: checks the channel every
 * `check_interval`; in `auto` mode, under the launcher, installs a release side by side in the window
 * after its spread delay, drains and asks the launcher to switch; the version on trial reports its health;
 * a version rolled back is told to the owner once (`update_failed`).
 */
// biome-ignore lint/suspicious/noConfusingVoidType: `update()` with no options, as run applies it.
export default definePlugin<UpdateOptions | void>((opts) => ({
  name: '@usepod-agent/plugin-update',
  apiVersion: 1,
  sections: ['update'],
  apply(hooks, ctx) {
    const cfg = ctx.section('update', updateSection) ?? updateSection.parse({});
    const dir = updateDir(ctx.keyPath, cfg.dir);
    const log = ctx.log;
    let running = ctx.coreVersion;
    let providerId: string | undefined;
    let view: UpdateView | undefined;
    let inflight = 0;
    let timer: NodeJS.Timeout | undefined;
    let switching: string | undefined;
    let closed = false;
    /** Why the update folder is not used (another user could write it), once the agent started. */
    let unsafe: string | undefined;
    /** The check under way, if any: close waits for it, so nothing is written into the folder after. */
    let checking: Promise<void> | undefined;
    const said = new Set<string>();
    const once = (key: string, f: () => void) => {
      if (said.has(key)) return;
      said.add(key);
      f();
    };
    const available = ctx.metrics.gauge(
      'usepod_agent_update_available',
      'A newer release is on the channel and not bad for this machine (1), else 0',
    );
    const badCount = ctx.metrics.gauge(
      'usepod_agent_update_bad_versions',
      'Versions rolled back on this machine',
    );
    const refresh = async () => {
      view = await readView(dir, cfg, running);
      available.set(
        view.latest && view.latest !== running && !view.bad.some((b) => b.version === view?.latest) ? 1 : 0,
      );
      badCount.set(view.bad.length);
    };
    ctx.statusSection('update', () => view ?? { mode: cfg.mode, channel: cfg.channel, running });
    ctx.doctorCheck('update', async () => {
      const v = await readView(dir, cfg, (await linkedVersion(files(dir).current)) ?? ctx.coreVersion);
      return [updateFinding(v)];
    });

    const trial = process.env.USEPOD_UPDATE_TRIAL;
    const health =
      underLauncher() && trial && isVersion(trial)
        ? new HealthReporter(files(dir).health, trial, ctx.agent, log)
        : undefined;

    // Aborted at close: an install under way ends with the agent.
    const stopping = new AbortController();
    const updater = () =>
      new Updater({ config: cfg, dir, running, providerId: () => providerId, log, signal: stopping.signal });

    const schedule = (ms: number) => {
      if (closed || switching) return;
      clearTimeout(timer);
      // Whatever a check meets (a registry's odd answer) is said; the next check runs all the same.
      timer = setTimeout(
        () => {
          const run = check()
            .catch((err: unknown) => {
              const error = errorMessage(err);
              if (error !== checkFailed) log.warn('update check failed', { error });
              checkFailed = error;
              schedule(cfg.check_interval);
            })
            .finally(() => {
              if (checking === run) checking = undefined;
            });
          checking = run;
        },
        Math.max(1000, ms),
      );
      timer.unref();
    };

    /** No new jobs, the ones in flight finish (within drain_timeout_s), then the launcher's switch. */
    const drainAndSwitch = async (u: Updater, version: string) => {
      switching = version;
      clearTimeout(timer);
      try {
        await u.requestSwitch(version);
      } catch (err) {
        // Not switching after all (switch.json could not be written: a full disk): the checks go on.
        switching = undefined;
        schedule(cfg.check_interval);
        throw err;
      }
      ctx.hold('update', { reason: `switching to usepod-agent ${version}` });
      const deadline = Date.now() + ctx.config.limits.drain_timeout_s * 1000;
      while (inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      log.info('drained: exiting so the launcher starts the new version', { version });
      // The launcher is this process's parent; `run` stops on SIGTERM as on the service manager's stop.
      // Windows has no signals (a SIGTERM sent there kills at once): `run`'s own handler is called instead.
      if (process.platform === 'win32') process.emit('SIGTERM', 'SIGTERM');
      else process.kill(process.pid, 'SIGTERM');
    };

    /** `update --now` (through plugin-control): answered at once, then drained and switched like auto. */
    const switchNow = async (id: string, version: string) => {
      let why: string | undefined;
      try {
        const installed = existsSync(entryOf(join(files(dir).versions, version)));
        const launcher = await readLauncher(dir);
        why = refuseNow({
          onTrial: launcher.trial?.version === running,
          version,
          running,
          underLauncher: underLauncher(),
          container: inContainer(),
          installed,
          bad: launcher.bad.find((b) => b.version === version),
          switchingTo: switching,
        });
      } catch (err) {
        why = `the update folder could not be read: ${errorMessage(err)}`;
      }
      if (closed && !why) why = 'it is stopping';
      ctx.publish(
        'update.now.answer',
        why ? { id, ok: false, why } : { id, ok: true, drainTimeoutS: ctx.config.limits.drain_timeout_s },
      );
      if (why) return log.info(`update --now to ${version} not done here: ${why}`);
      if (switching === version) return;
      log.info(`update --now: switching to usepod-agent ${version} once jobs in flight are done`);
      await drainAndSwitch(updater(), version);
    };

    // A failed check or plugin lookup (the registry down) is said once, not at every check, until it
    // succeeds again or fails otherwise.
    let checkFailed: string | undefined;
    let lookupsFailed = new Set<string>();
    const check = async () => {
      const u = updater();
      const r = await u.check();
      // Closed meanwhile: what the check found (or its npm ended by the stop) is for no one.
      if (closed) return;
      let next = cfg.check_interval;
      const d = r.decision;
      if (r.error && r.error !== checkFailed) log.warn('update check failed', { error: r.error });
      checkFailed = r.error;
      if (r.lookups) {
        for (const why of r.lookups)
          if (!lookupsFailed.has(why)) log.warn('no compatible release of a plugin found', { plugin: why });
        lookupsFailed = new Set(r.lookups);
      }
      // A failed check decides nothing (no decision).
      if (d?.do === 'held') once(`held:${d.version}`, () => log.warn(d.why));
      else if (d?.do === 'announce')
        once(`announce:${d.version}`, () => {
          log.info(
            `usepod-agent ${d.version} is available (running ${running}): \`usepod-agent update --now\``,
          );
          void u.announced(d.version).then((first) => {
            if (first)
              ctx.notify({
                name: 'update_available',
                severity: 'info',
                title: `usepod-agent ${d.version} is available`,
                message: `This machine runs ${running}. Install it with \`usepod-agent update --now\`, or set [update] mode = "auto".`,
              });
          });
        });
      else if (d?.do === 'wait') {
        once(`wait:${d.version}:${d.why}`, () =>
          log.info(`usepod-agent ${d.version} found; waiting: ${d.why}`, {
            until: new Date(d.until).toISOString(),
          }),
        );
        next = Math.min(next, d.until > Date.now() ? d.until - Date.now() + 500 : 60_000);
      } else if (d?.do === 'install') {
        if (!underLauncher()) {
          once(`nolauncher:${d.version}`, () =>
            log.warn(
              `usepod-agent ${d.version} is available; auto updates switch through the launcher, which is not running this agent: \`usepod-agent update --now\`, or \`usepod-agent service install\``,
            ),
          );
        } else {
          try {
            const along = (await u.companions(d.version)).map((c) => `${c.name} ${c.version}`);
            log.info(
              `installing usepod-agent ${d.version} beside ${running}${along.length ? ` with ${along.join(', ')}` : ''}`,
            );
            await u.install(d.version);
            await refresh();
            if (!closed && !switching) await drainAndSwitch(u, d.version);
            return;
          } catch (err) {
            log.warn('update install failed', { version: d.version, error: errorMessage(err) });
          }
        }
      }
      await refresh().catch(() => {});
      schedule(next);
    };

    hooks.onEvent.tap('update', (e: AgentEvent) => {
      health?.onEvent(e);
      if (e.type === 'plugin' && e.from === CONTROL_PLUGIN && e.topic === 'update.now') {
        const req = nowRequest.safeParse(e.data);
        if (req.success)
          void switchNow(req.data.id, req.data.version).catch((err: unknown) =>
            log.warn('update --now failed', { error: errorMessage(err) }),
          );
        return;
      }
      if (e.type === 'job_start') inflight++;
      else if (e.type === 'job_end') inflight = Math.max(0, inflight - 1);
      else if (e.type === 'connected') {
        providerId = e.providerId ?? providerId;
        if (!said.has('first-online') && cfg.mode !== 'off' && !inContainer() && !unsafe) {
          said.add('first-online');
          // A version on trial checks only once the launcher had time to keep it.
          schedule(health ? cfg.health_timeout : (opts?.firstCheckMs ?? 10_000));
        }
      }
    });

    hooks.onStart.tapPromise('update', async (info) => {
      providerId = info.providerId;
      if (underLauncher()) running = (await linkedVersion(files(dir).current)) ?? running;
      if (cfg.mode === 'off') return;
      if (inContainer()) {
        log.info('in a container: updates come with the image tag; the updater stays off');
        return;
      }
      // A folder another user could write: what it says (versions "rolled back", with their wording sent
      // to the owner as update_failed; a release held back) is theirs to say, so nothing is read from it.
      unsafe = existsSync(dir) ? folderProblem(dir) : undefined;
      if (unsafe) {
        log.warn(`the updater stays off: ${unsafe}`);
        return;
      }
      try {
        const u = updater();
        for (const b of await u.untoldRollbacks()) {
          log.warn(`usepod-agent ${b.version} was rolled back: it ${b.reason}`);
          ctx.notify({
            name: 'update_failed',
            severity: 'critical',
            title: `usepod-agent ${b.version} was rolled back`,
            message: `The update to ${b.version} ${b.reason}. This machine runs ${running} again and will not install ${b.version} again.`,
          });
        }
        if (!health) await u.prune();
        await refresh();
      } catch (err) {
        log.warn('the update folder could not be read', { dir, error: errorMessage(err) });
      }
    });

    // npm ended by the abort, the check under way returns without writing; waited for (the hook's own
    // bound applies), so a closed agent's update folder no longer changes (a service stopped, then removed).
    hooks.onClose.tapPromise('update', async () => {
      closed = true;
      clearTimeout(timer);
      stopping.abort();
      await checking;
    });
  },
}));
