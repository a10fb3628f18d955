import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, type Logger } from '@usepod-agent/core';
import gt from 'semver/functions/gt.js';
import lt from 'semver/functions/lt.js';
import rcompare from 'semver/functions/rcompare.js';
import { type Companion, planCompanions } from './companions.js';
import type { UpdateConfig } from './config.js';
import { type Decision, decide } from './decide.js';
import { installVersion, npmRegistry, type Release, viewRelease } from './npm.js';
import { operatorPlugins } from './ranges.js';
import {
  files,
  isVersion,
  type LauncherState,
  linkedVersion,
  readLauncher,
  readUpdateState,
  type UpdateState,
  writeAtomic,
} from './state.js';

/**
 * Containers update by image tag: the updater says so once and stays off. USEPOD_CONTAINER says it outright
 * (`0`: an install inside a long-lived container that updates itself like a machine).
 */
export function inContainer(): boolean {
  const said = process.env.USEPOD_CONTAINER;
  if (said === '1' || said === '0') return said === '1';
  return existsSync('/.dockerenv') || existsSync('/run/.containerenv');
}

/** True when a launcher started this agent (it passes the folder): only then can an update switch. */
export const underLauncher = () => Boolean(process.env.USEPOD_UPDATE_DIR);

export interface CheckResult {
  release: Release | undefined;
  decision: Decision | undefined;
  error: string | undefined;
  /** Why a stranded plugin's release could not be looked up, one line each; undefined: none was looked up. */
  lookups?: string[] | undefined;
}

export interface UpdaterOptions {
  config: UpdateConfig;
  dir: string;
  /** The version running (the `current` link's, else core's). */
  running: string;
  providerId: () => string | undefined;
  log: Logger;
  now?: () => number;
  /** The plugins' folder (`plugins install`, `plugins link`); tests give their own. */
  pluginRoot?: string;
  /** Aborted when the agent stops: an install under way ends with it (npm and what it started). */
  signal?: AbortSignal;
}

/**
 * One machine's updater: checks the channel, says or holds back or waits or installs, and when a new
 * version is installed asks the launcher to switch (switch.json) once the agent has drained.
 */
export class Updater {
  readonly #o: UpdaterOptions;
  readonly #now: () => number;

  constructor(o: UpdaterOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  get dir(): string {
    return this.#o.dir;
  }

  /**
   * Asks the registry and decides; the state file keeps what was found. Never throws. Once the agent is
   * stopping (`signal`), npm is ended and nothing more is written: a stopped agent leaves its folder alone.
   */
  async check(): Promise<CheckResult> {
    const c = this.#o.config;
    const state = await readUpdateState(this.#o.dir);
    const launcher = await readLauncher(this.#o.dir);
    let release: Release | undefined;
    try {
      release = await viewRelease(c.channel, c.registry, this.#o.signal);
    } catch (err) {
      const error = errorMessage(err);
      await this.#save({ ...state, checkedAt: new Date(this.#now()).toISOString(), error });
      return { release: undefined, decision: undefined, error };
    }
    // Stopped while npm answered: no plugin look-ups (each up to 30 s) for a check nobody will act on.
    if (this.#o.signal?.aborted) return { release: undefined, decision: undefined, error: 'stopping' };
    const bad = launcher.bad.map((b) => b.version);
    const plugins = await operatorPlugins(this.#o.pluginRoot);
    let companions: Companion[] = [];
    let lookups: string[] | undefined;
    if (gt(release.version, this.#o.running) && !bad.includes(release.version)) {
      let registry: Promise<string> | undefined;
      const plan = await planCompanions(plugins, release.version, {
        channel: c.channel,
        registry: () => {
          registry ??= npmRegistry(c.registry, this.#o.signal);
          return registry;
        },
        signal: this.#o.signal,
      });
      companions = plan.companions;
      lookups = plan.lookups;
    }
    const decision = decide({
      mode: c.mode === 'auto' ? 'auto' : 'notify',
      running: this.#o.running,
      release,
      bad,
      plugins,
      companions,
      now: this.#now(),
      providerId: this.#o.providerId(),
      minAgeMs: c.min_age,
      spreadMs: c.spread,
      windows: c.window,
      timezone: c.timezone,
    });
    const next: UpdateState = {
      ...state,
      checkedAt: new Date(this.#now()).toISOString(),
      latest: { version: release.version, publishedAt: new Date(release.publishedAt).toISOString() },
      plugins: companions.length > 0 ? companions : undefined,
      error: undefined,
      held: decision.do === 'held' ? { version: decision.version, why: decision.why } : undefined,
      pending:
        decision.do === 'wait'
          ? { version: decision.version, at: new Date(decision.until).toISOString(), installed: false }
          : decision.do === 'install'
            ? { version: decision.version, at: new Date(this.#now()).toISOString(), installed: false }
            : undefined,
    };
    await this.#save(next);
    return { release, decision, error: undefined, lookups };
  }

  /** The plugin releases the last check found to come along with `version`. */
  async companions(version: string): Promise<Companion[]> {
    const state = await readUpdateState(this.#o.dir);
    return state.latest?.version === version ? (state.plugins ?? []) : [];
  }

  /** Installs a version side by side (never twice the same folder), with its plugins' compatible releases. */
  async install(version: string): Promise<string> {
    const dir = await installVersion(
      files(this.#o.dir).versions,
      version,
      this.#o.config.registry,
      await this.companions(version),
      this.#o.signal,
    );
    const state = await readUpdateState(this.#o.dir);
    await this.#save({
      ...state,
      pending: { version, at: new Date(this.#now()).toISOString(), installed: true },
    });
    return dir;
  }

  /** Asks the launcher to switch to `version` when this agent exits; it has `health_timeout` to prove itself. */
  async requestSwitch(version: string): Promise<void> {
    await writeAtomic(files(this.#o.dir).switch, { version, healthTimeoutMs: this.#o.config.health_timeout });
  }

  /** Marks `announced` so notify mode says a version once. */
  async announced(version: string): Promise<boolean> {
    const state = await readUpdateState(this.#o.dir);
    if (state.announced === version) return false;
    await this.#save({ ...state, announced: version });
    return true;
  }

  /** Roll-backs the owner was not told of yet (each told once: `notified`). */
  async untoldRollbacks(): Promise<LauncherState['bad']> {
    const launcher = await readLauncher(this.#o.dir);
    const state = await readUpdateState(this.#o.dir);
    const untold = launcher.bad.filter((b) => !state.notified.includes(b.version));
    if (untold.length > 0)
      await this.#save({
        ...state,
        notified: [...state.notified, ...untold.map((b) => b.version)].slice(-200),
      });
    return untold;
  }

  /**
   * Keeps `current`, `previous` and at most one more previous version on disk; bad versions and
   * half-installs go (a version on trial is never touched: the launcher may still need it).
   */
  async prune(): Promise<void> {
    const f = files(this.#o.dir);
    const launcher = await readLauncher(this.#o.dir);
    if (launcher.trial) return;
    const current = await linkedVersion(f.current);
    const previous = await linkedVersion(f.previous);
    let entries: string[];
    try {
      entries = await readdir(f.versions);
    } catch {
      return;
    }
    const bad = new Set(launcher.bad.map((b) => b.version));
    const versions = entries.filter(isVersion).sort(rcompare);
    const keep = new Set([current, previous].filter((v): v is string => v !== undefined));
    const older = versions.filter((v) => !keep.has(v) && !bad.has(v) && (!current || lt(v, current)));
    if (older[0]) keep.add(older[0]);
    const pending = (await readUpdateState(this.#o.dir)).pending?.version;
    for (const e of entries) {
      // A pending install is left alone, unless it is the version just rolled back.
      if (keep.has(e) || (e === pending && !bad.has(e))) continue;
      if (isVersion(e) || e.startsWith('.partial-'))
        await rm(join(f.versions, e), { recursive: true, force: true }).catch(() => {});
    }
  }

  async #save(state: UpdateState): Promise<void> {
    if (this.#o.signal?.aborted) return;
    try {
      await writeAtomic(files(this.#o.dir).state, state);
    } catch (err) {
      this.#o.log.warn('update-state.json could not be written', { error: errorMessage(err) });
    }
  }
}

/** What `update`, `status` and `doctor` show: read from the folder alone (the agent need not run). */
export interface UpdateView {
  dir: string;
  mode: UpdateConfig['mode'];
  channel: string;
  running: string;
  current: string | undefined;
  previous: string | undefined;
  kept: string[];
  checkedAt: string | undefined;
  latest: string | undefined;
  /** Plugins' compatible releases that come along with the latest (installed into its folder). */
  plugins: Companion[];
  pending: UpdateState['pending'];
  held: string | undefined;
  trial: string | undefined;
  bad: LauncherState['bad'];
  error: string | undefined;
  container: boolean;
}

export async function readView(dir: string, config: UpdateConfig, running: string): Promise<UpdateView> {
  const f = files(dir);
  const state = await readUpdateState(dir);
  const launcher = await readLauncher(dir);
  let kept: string[] = [];
  try {
    kept = (await readdir(f.versions)).filter(isVersion).sort(rcompare);
  } catch {}
  return {
    dir,
    mode: config.mode,
    channel: config.channel,
    running,
    current: await linkedVersion(f.current),
    previous: await linkedVersion(f.previous),
    kept,
    checkedAt: state.checkedAt,
    latest: state.latest?.version,
    plugins: state.plugins ?? [],
    pending: state.pending,
    held: state.held?.why,
    trial: launcher.trial?.version,
    bad: launcher.bad,
    error: state.error,
    container: inContainer(),
  };
}
