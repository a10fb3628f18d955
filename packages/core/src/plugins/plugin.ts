import type { BackendFactory } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { PluginHooks } from './hooks.js';

/** The plugin API this core implements. A plugin states the version it was written for. */
export const PLUGIN_API_VERSION = 1;

export interface PluginContext {
  /** Registers the factory for a backend kind named in `[[backends]] kind`. */
  registerBackend(kind: string, factory: BackendFactory): void;
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
  /** Must equal `PLUGIN_API_VERSION` of the core loading it. */
  readonly apiVersion: number;
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

/** Checks shape and API version; a mismatch is a coded error. */
export function validatePlugin(value: unknown, from: string): AgentPlugin {
  const p = value as Partial<AgentPlugin> | undefined;
  if (!p || typeof p !== 'object' || typeof p.name !== 'string' || typeof p.apply !== 'function') {
    throw new UsepodError(
      'USEPOD_PLUGIN_INVALID',
      `${from} is not a usepod-agent plugin: it must export a plugin object or definePlugin() factory with "name" and "apply"`,
      { user: true },
    );
  }
  if (p.apiVersion !== PLUGIN_API_VERSION) {
    throw new UsepodError(
      'USEPOD_PLUGIN_API_MISMATCH',
      `plugin "${p.name}" targets plugin API ${String(p.apiVersion)}, but this agent implements API ${PLUGIN_API_VERSION}; install a matching version`,
      { user: true, plugin: p.name },
    );
  }
  return p as AgentPlugin;
}

/** Turns a module's default export (factory or object) into a validated plugin. */
export function pluginFromModule(mod: unknown, from: string, options?: unknown): AgentPlugin {
  const m = mod as { default?: unknown; plugin?: unknown } | undefined;
  const exported = m?.default ?? m?.plugin ?? m;
  const value = typeof exported === 'function' ? (exported as (o: unknown) => unknown)(options) : exported;
  return validatePlugin(value, from);
}

/** Applies plugins to a throwaway context and returns their backend factories by kind (for probes outside an agent). */
export async function collectBackendFactories(
  plugins: readonly AgentPlugin[],
  config: Readonly<Config>,
  log: Logger,
  coreVersion: string,
): Promise<Map<string, BackendFactory>> {
  const factories = new Map<string, BackendFactory>();
  const noHooks = new Proxy({}, { get: () => Object.freeze({ tap() {}, tapPromise() {} }) }) as PluginHooks;
  for (const p of plugins) {
    await p.apply(noHooks, {
      registerBackend: (kind, factory) => {
        if (!factories.has(kind)) factories.set(kind, factory);
      },
      log,
      config,
      coreVersion,
    });
  }
  return factories;
}
