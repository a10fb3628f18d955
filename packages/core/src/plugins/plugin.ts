import semver from 'semver';
import type { BackendFactory } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { AGENT_VERSION } from '../version.js';
import type { PluginHooks } from './hooks.js';
import type { BackendKind } from './kinds.js';

/**
 * The plugin API this core implements. A plugin states the version it was built for as a literal
 * (`apiVersion: 1`), never by importing this constant: a check against the running core's own number
 * could never fail. Internal on purpose (not exported by "." or "./backend").
 */
export const PLUGIN_API_VERSION = 1;

export interface PluginContext {
  /**
   * Registers a backend kind named in `[[backends]] kind`: a descriptor (how to create one, its options,
   * what an entry requires, default ports, routing priority, remote or not), or just its factory.
   */
  // biome-ignore lint/suspicious/noExplicitAny: a descriptor's options type is the plugin's own.
  registerBackend(kind: string, descriptor: BackendKind<any> | BackendFactory): void;
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

/** Checks a plugin's shape; its contract is checked where it is applied (`checkContract`). */
export function validatePlugin(value: unknown, from: string): AgentPlugin {
  const p = value as Partial<AgentPlugin> | undefined;
  if (!p || typeof p !== 'object' || typeof p.name !== 'string' || typeof p.apply !== 'function') {
    throw new UsepodError(
      'USEPOD_PLUGIN_INVALID',
      `${from} is not a usepod-agent plugin: it must export a plugin object or definePlugin() factory with "name" and "apply"`,
      { user: true },
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
    (semver.validRange(range) !== null &&
      semver.satisfies(AGENT_VERSION, range, { includePrerelease: true }));
  if (apiOk && rangeOk) return p;
  const wants = [`plugin API ${String(p.apiVersion)}`, ...(range ? [`core ${range}`] : [])].join(', ');
  throw new UsepodError(
    'USEPOD_PLUGIN_API_MISMATCH',
    `plugin "${p.name}" (${from}) was built for ${wants}; this agent is @usepod-agent/core ${AGENT_VERSION} with plugin API ${PLUGIN_API_VERSION}: install a version of the plugin made for it`,
    { user: true, plugin: p.name },
  );
}

/** Turns a module's default export (factory or object) into a validated plugin. */
export function pluginFromModule(mod: unknown, from: string, options?: unknown): AgentPlugin {
  const m = mod as { default?: unknown; plugin?: unknown } | undefined;
  const exported = m?.default ?? m?.plugin ?? m;
  const value = typeof exported === 'function' ? (exported as (o: unknown) => unknown)(options) : exported;
  return validatePlugin(value, from);
}
