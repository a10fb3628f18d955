import satisfies from 'semver/functions/satisfies.js';
import validRange from 'semver/ranges/valid.js';
import type { AgentStatus } from '../agent/types.js';
import type { BackendFactory } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { PluginMetrics } from '../observability/plugin-metrics.js';
import type { StatusRouteAuth, StatusRouteHandler } from '../observability/status-server.js';
import type { JobJournal } from '../relay/journal.js';
import type { SelfTestResult } from '../routing/selftest.js';
import { AGENT_VERSION } from '../version.js';
import { isPluginName, pluginText, threwIn } from './bounded.js';
import type { PluginHooks } from './hooks.js';
import type { BackendKind, OptionsSchema, RegisteredKind } from './kinds.js';

/**
 * The plugin API this core implements. A plugin states the version it was built for as a literal
 * (`apiVersion: 1`), never by importing this constant: a check against the running core's own number
 * could never fail. Internal on purpose (not exported by "." or "./backend").
 */
export const PLUGIN_API_VERSION = 1;

/** One line of `usepod-agent doctor`: ok, warn (earning, but worse than it could) or fail (not earning). */
export interface DoctorFinding {
  /** A short name for the line (`ledger`, `gpu`). */
  name: string;
  level: 'ok' | 'warn' | 'fail';
  /** What was found. Text from outside (an engine, a tool) must be folded first (`engineText`). */
  detail: string;
  /** What to do about it. */
  fix?: string;
}

/** What `doctor` learned before it runs the plugins' checks. */
export interface DoctorFacts {
  /** How many requests the configured engines run at once, summed (undefined: none said). */
  engineCapacity: number | undefined;
}

/** A hold on the agent: it is paused while any exists. */
export interface Hold {
  /** Who holds it: `owner`, `schedule`, `gpu`, `heat`, or a plugin's own name. */
  by: string;
  reason: string;
  /** ISO time it ends by itself; none: until released. */
  until: string | undefined;
  /** ISO time it was placed. */
  since: string;
  /** The backends (labels) a scoped hold withdraws; absent: the whole agent is paused. */
  backends?: string[];
}

/** What `ctx.hold` takes. */
export interface HoldOptions {
  reason: string;
  /** It ends by itself then; none: until released. */
  until?: Date | undefined;
  /**
   * Withdraws only the models these backends serve (labels, as `ctx.agent.backends()` names them): a
   * model another backend also serves stays offered and is routed there, jobs in flight finish, and the
   * agent is not paused. Absent: the whole agent is held.
   */
  backends?: readonly string[] | undefined;
}

/** A configured backend, as `ctx.agent.backends()` shows it. */
export interface AgentBackend {
  /** How core names it: `name` from config, else `kind@host` (holds, status, logs). */
  label: string;
  kind: string;
  url: string | undefined;
}

/** A job being served now, as `ctx.agent.jobs()` shows it. */
export interface JobInFlight {
  jobId: string;
  model: string;
  /** The backend serving it (undefined while it is routed). */
  backend: string | undefined;
  /** Since the job frame arrived, ms. */
  ageMs: number;
  /** Bytes relayed so far. */
  bytes: number;
  /** Stream events relayed so far (about one per output token). */
  events: number;
}

/**
 * What a plugin may ask of the running agent. Only valid once the agent has started (`onStart` and later);
 * before, the calls answer as an agent that serves nothing.
 */
export interface AgentAccess {
  /** The owner's pause (the `owner` hold; `until` at most ~100 years ahead, else a coded error). */
  pause(opts?: { reason?: string; until?: Date }): void;
  /** The owner's resume: their hold, and the quiet-hours window held now (theirs until it ends). */
  resume(): void;
  /** The holds keeping the agent paused now, owner's first. */
  holds(): Hold[];
  /** Runs a self-test round now (waiting for room), resolving with each pair's result. */
  selftest(): Promise<SelfTestResult[]>;
  /** Each served model's last self-test. */
  selftestResults(): SelfTestResult[];
  /** The backend kinds of the configured `[[backends]]`, as their plugins registered them. */
  configuredKinds(): RegisteredKind[];
  /** The configured backends (none before start). */
  backends(): AgentBackend[];
  /** What `/status` shows now (the plugins' sections included), secrets redacted. */
  status(): AgentStatus | undefined;
  /** The jobs in flight, oldest first. */
  jobs(): JobInFlight[];
}

export interface PluginContext {
  /**
   * Registers a backend kind named in `[[backends]] kind`: a descriptor (how to create one, its options,
   * what an entry requires, default ports, routing priority, remote or not), or just its factory.
   */
  // biome-ignore lint/suspicious/noExplicitAny: a descriptor's options type is the plugin's own.
  registerBackend(kind: string, descriptor: BackendKind<any> | BackendFactory): void;
  /**
   * Claims the top-level section `[name]` (or `[[name]]`) of agent.toml and returns it as `schema` parsed
   * it (any Standard Schema: zod, valibot...), or undefined when the file has none. A mistake is the
   * config's mistake, at `file:line:column`. The package declares the section in its package.json
   * (`"usepod-agent": { "sections": ["name"] }`) so the agent finds it when the section is set.
   */
  section<T>(name: string, schema: OptionsSchema<T>): T | undefined;
  /**
   * Holds the agent paused under `name` (the models leave capabilities, new jobs are refused, jobs in
   * flight finish) until `release(name)` or `until`. Holding again under the same name replaces it.
   * With `backends`, only the models of those backends are withdrawn (see `HoldOptions`).
   */
  hold(name: string, opts: HoldOptions): void;
  release(name: string): void;
  /**
   * Where each job's record is written before its terminal frame leaves (decision 0006). One plugin
   * provides it; `write` may return a promise (a worker thread), which the job's terminal frame waits for.
   * False when a plugin applied by default yields to one the agent was given (it should then stand down).
   */
  provideJournal(journal: JobJournal): boolean;
  /**
   * Tells the owner something through the observation stream (a `notice` event, which alerts delivers):
   * `name` says what (`ledger_failing`), `resolved` that it is over. Text is folded and bounded by core.
   */
  notify(notice: {
    name: string;
    severity: 'info' | 'warning' | 'critical';
    title: string;
    message: string;
    resolved?: boolean;
  }): void;
  /**
   * Tells the other plugins something on the observation stream: an `onEvent` event `{ type: 'plugin',
   * from, topic, data }`. `topic` is lowercase letters, digits, `.`, `_` and `-` (at most 64); `data` plain
   * JSON of at most 16 KiB (each receiver gets the same frozen copy); else a coded error
   * (USEPOD_PLUGIN_INVALID). Taps hear it synchronously, so publish small facts, not streams.
   */
  publish(topic: string, data: unknown): void;
  /** Metrics on the agent's `/metrics` (names under `usepod_agent_`, label values folded and bounded). */
  readonly metrics: PluginMetrics;
  /** A section of `/status`, `status` and `status --json` under `name`: a small JSON value, asked each time. */
  statusSection(name: string, read: () => unknown): void;
  /**
   * Serves `path` on the status server (`observability.prometheus_addr`; the dashboard). Core checks
   * first: the `Host` (DNS rebinding), the status token (`Authorization: Bearer`; `opts.auth` opens a
   * GET of a file holding no data, or takes `?token=` for an event stream), a POST's `Origin` (CSRF)
   * and its body (at most 16 KiB), and adds a `default-src 'self'` CSP. Exact paths; core's own cannot
   * be taken.
   */
  statusRoute(
    method: 'GET' | 'POST',
    path: string,
    handle: StatusRouteHandler,
    opts?: { auth?: StatusRouteAuth },
  ): void;
  /** Lines of `usepod-agent doctor`, run without the agent running (and with it). */
  doctorCheck(name: string, check: (facts: DoctorFacts) => DoctorFinding[] | Promise<DoctorFinding[]>): void;
  /** The running agent, for what a feature needs of it. */
  readonly agent: AgentAccess;
  /** The identity key's path (home expanded); files of a feature's own go beside it (`dirname`). */
  readonly keyPath: string;
  /** A logger under `usepod:plugin:<name>`. */
  readonly log: Logger;
  /** The validated config, read-only. */
  readonly config: Readonly<Config>;
  /** Version of @usepod-agent/core running the plugin. */
  readonly coreVersion: string;
}

export interface AgentPlugin {
  /** Package-like name, shown in logs and errors. */
  readonly name: string;
  /** The plugin API the plugin was built for, as a literal (this core implements API 1). */
  readonly apiVersion: number;
  /** Optionally, the versions of @usepod-agent/core it was built for, as a semver range (`^0.4.0`). */
  readonly core?: string;
  /** Backend kinds this plugin registers (for `plugins` listings and resolution). */
  readonly kinds?: readonly string[];
  /** Config sections this plugin claims (for `plugins` listings). */
  readonly sections?: readonly string[];
  apply(hooks: PluginHooks, ctx: PluginContext): void | Promise<void>;
}

export type PluginFactory<O = void> = ((options: O) => AgentPlugin) & { readonly [PLUGIN_MARK]: true };

const PLUGIN_MARK = Symbol.for('usepod-agent.plugin');

/**
 * Identity helper for type inference: `export default definePlugin((opts) => ({ name, apiVersion: 1, apply }))`.
 */
export function definePlugin<O = void>(factory: (options: O) => AgentPlugin): PluginFactory<O> {
  return Object.assign((options: O) => factory(options), { [PLUGIN_MARK]: true as const });
}

/** npm's longest package name: a plugin's name is one. */
const MAX_PLUGIN_NAME = 214;
/** More kinds or sections than a plugin ever has. */
const MAX_PLUGIN_WORDS = 64;

const isWords = (v: unknown) =>
  v === undefined ||
  (Array.isArray(v) && v.length <= MAX_PLUGIN_WORDS && v.every((w) => isPluginName(w, MAX_PLUGIN_NAME)));

/**
 * Checks a plugin's shape: a name, `apply`, and `kinds` and `sections` as lists of names (a listing shows
 * them: a number there crashed `plugins`, an escape reached the terminal). Its contract is checked where
 * it is applied (`checkContract`).
 */
export function validatePlugin(value: unknown, from: string): AgentPlugin {
  const p = value as Partial<AgentPlugin> | undefined;
  const wrong =
    !p || typeof p !== 'object' || typeof p.apply !== 'function'
      ? 'it must export a plugin object or definePlugin() factory with "name" and "apply"'
      : !isPluginName(p.name, MAX_PLUGIN_NAME)
        ? `its "name" must be a string of 1 to ${MAX_PLUGIN_NAME} characters with no control character`
        : !isWords(p.kinds) || !isWords(p.sections)
          ? `its "kinds" and "sections" must be lists of at most ${MAX_PLUGIN_WORDS} such names`
          : undefined;
  if (wrong) {
    throw new UsepodError(
      'USEPOD_PLUGIN_INVALID',
      `${pluginText(from)} is not a usepod-agent plugin: ${wrong}`,
      {
        user: true,
      },
    );
  }
  return checkContract(p as AgentPlugin, from);
}

/**
 * The contract a plugin was built for against this core: its `apiVersion` literal, and its `core` semver
 * range when it gives one. Outside it, one line names the plugin, what it wants and what this core is.
 */
export function checkContract(p: AgentPlugin, from: string): AgentPlugin {
  const range = typeof p.core === 'string' ? p.core : undefined;
  const apiOk = p.apiVersion === PLUGIN_API_VERSION;
  const rangeOk =
    range === undefined ||
    // semver's own bound for a version; a longer range is no range a plugin means (and is never parsed).
    (range.length <= 256 &&
      validRange(range) !== null &&
      satisfies(AGENT_VERSION, range, { includePrerelease: true }));
  if (apiOk && rangeOk) return p;
  // Said as the plugin gave them, folded: a non-number there is named by its type.
  const api = typeof p.apiVersion === 'number' ? String(p.apiVersion) : `of type ${typeof p.apiVersion}`;
  const wants = [`plugin API ${api}`, ...(range ? [`core ${pluginText(range)}`] : [])].join(', ');
  throw new UsepodError(
    'USEPOD_PLUGIN_API_MISMATCH',
    `plugin "${pluginText(p.name)}" (${pluginText(from)}) was built for ${wants}; this agent is @usepod-agent/core ${AGENT_VERSION} with plugin API ${PLUGIN_API_VERSION}: install a version of the plugin made for it`,
    { user: true, plugin: pluginText(p.name) },
  );
}

/** Turns a module's default export (factory or object) into a validated plugin. */
export function pluginFromModule(mod: unknown, from: string, options?: unknown): AgentPlugin {
  const m = mod as { default?: unknown; plugin?: unknown } | undefined;
  const exported = m?.default ?? m?.plugin ?? m;
  let value: unknown = exported;
  try {
    if (typeof exported === 'function') value = (exported as (o: unknown) => unknown)(options);
  } catch (err) {
    throw threwIn(err, from, 'its factory');
  }
  return validatePlugin(value, from);
}
