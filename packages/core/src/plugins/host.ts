import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { AGENT_VERSION } from '../version.js';
import { type AgentHooks, createHooks, pluginView } from './hooks.js';
import { type BackendKind, type RegisteredKind, registeredKind } from './kinds.js';
import { type AgentPlugin, checkContract } from './plugin.js';

/**
 * The one place plugins are applied, for the agent and for everything that needs a plugin's kinds
 * without running an agent (`backends`, `setup`, the conformance suite): contract checked, hooks given as
 * a tap-only view, kinds registered once each (the first plugin to register a kind keeps it).
 */
export class PluginHost {
  readonly hooks: AgentHooks;
  readonly #kinds = new Map<string, RegisteredKind>();
  readonly #plugins: AgentPlugin[] = [];
  readonly #config: Readonly<Config>;
  readonly #log: Logger;

  constructor(opts: { config: Readonly<Config>; log: Logger; hooks?: AgentHooks }) {
    this.#config = opts.config;
    this.#log = opts.log;
    this.hooks = opts.hooks ?? createHooks();
  }

  get plugins(): readonly AgentPlugin[] {
    return this.#plugins;
  }

  get kinds(): ReadonlyMap<string, RegisteredKind> {
    return this.#kinds;
  }

  /** Routing preference of a kind: lower first; unknown kinds last. */
  readonly priority = (kind: string): number => this.#kinds.get(kind)?.priority ?? Number.MAX_SAFE_INTEGER;

  async apply(plugin: AgentPlugin): Promise<void> {
    if (this.#plugins.some((p) => p.name === plugin.name)) return;
    checkContract(plugin, plugin.name);
    const log = this.#log.child(`plugin:${plugin.name}`);
    await plugin.apply(pluginView(this.hooks, plugin.name), {
      registerBackend: (kind: string, descriptor: BackendKind | Parameters<typeof registeredKind>[2]) => {
        if (typeof kind !== 'string' || kind.length === 0) {
          throw new UsepodError(
            'USEPOD_PLUGIN_INVALID',
            `plugin "${plugin.name}" registered a kind without a name`,
            {
              user: true,
              plugin: plugin.name,
            },
          );
        }
        if (!this.#kinds.has(kind)) this.#kinds.set(kind, registeredKind(kind, plugin.name, descriptor));
      },
      log,
      config: this.#config,
      coreVersion: AGENT_VERSION,
    });
    this.#plugins.push(plugin);
    log.debug('plugin applied', { kinds: plugin.kinds?.join(',') });
  }
}
