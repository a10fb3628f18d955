import { Registry } from 'prom-client';
import { expandHome } from '../config/paths.js';
import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { pluginMetrics } from '../observability/plugin-metrics.js';
import { engineText } from '../untrusted.js';
import { AGENT_VERSION } from '../version.js';
import { Features } from './features.js';
import { type AgentEvent, type AgentHooks, createHooks, pluginView } from './hooks.js';
import { type BackendKind, type RegisteredKind, registeredKind } from './kinds.js';
import { type AgentAccess, type AgentPlugin, checkContract, type PluginContext } from './plugin.js';

/** What a plugin's holds act on: the agent's, or nothing for a host that runs no agent. */
export interface HoldTarget {
  hold(name: string, opts: { reason: string; until?: Date }): void;
  release(name: string): void;
  /** Publishes a plugin's notice on the observation stream. */
  notify(event: Extract<AgentEvent, { type: 'notice' }>): void;
  /** The registry plugin metrics join (`/metrics`). */
  readonly registry: Registry;
}

/** The agent seen from a host that runs none (`backends`, `setup`, the conformance suite). */
const NO_AGENT: AgentAccess & HoldTarget = {
  pause: () => {},
  resume: () => {},
  holds: () => [],
  selftest: () => Promise.resolve([]),
  selftestResults: () => [],
  configuredKinds: () => [],
  status: () => undefined,
  jobs: () => [],
  hold: () => {},
  release: () => {},
  notify: () => {},
  registry: new Registry(),
};

/**
 * The one place plugins are applied, for the agent and for everything that needs a plugin's kinds
 * without running an agent (`backends`, `setup`, the conformance suite): contract checked, hooks given as
 * a tap-only view, kinds registered once each (the first plugin to register a kind keeps it), and what
 * feature plugins give (sections, holds, journal, status, doctor) collected in `features`.
 */
export class PluginHost {
  readonly hooks: AgentHooks;
  readonly features: Features;
  readonly #kinds = new Map<string, RegisteredKind>();
  readonly #plugins: AgentPlugin[] = [];
  readonly #config: Readonly<Config>;
  readonly #log: Logger;
  readonly #agent: AgentAccess & HoldTarget;

  constructor(opts: {
    config: Readonly<Config>;
    log: Logger;
    hooks?: AgentHooks;
    agent?: AgentAccess & HoldTarget;
  }) {
    this.#config = opts.config;
    this.#log = opts.log;
    this.hooks = opts.hooks ?? createHooks();
    this.features = new Features(opts.config);
    this.#agent = opts.agent ?? NO_AGENT;
  }

  get plugins(): readonly AgentPlugin[] {
    return this.#plugins;
  }

  get kinds(): ReadonlyMap<string, RegisteredKind> {
    return this.#kinds;
  }

  /** Routing preference of a kind: lower first; unknown kinds last. */
  readonly priority = (kind: string): number => this.#kinds.get(kind)?.priority ?? Number.MAX_SAFE_INTEGER;

  has(name: string): boolean {
    return this.#plugins.some((p) => p.name === name);
  }

  /** `byDefault`: applied because it is installed and on by default; it yields where the config chose another. */
  async apply(plugin: AgentPlugin, opts: { byDefault?: boolean } = {}): Promise<void> {
    if (this.has(plugin.name)) return;
    checkContract(plugin, plugin.name);
    const name = plugin.name;
    const log = this.#log.child(`plugin:${name}`);
    const features = this.features;
    const agent = this.#agent;
    const ctx: PluginContext = {
      registerBackend: (kind: string, descriptor: BackendKind | Parameters<typeof registeredKind>[2]) => {
        if (typeof kind !== 'string' || kind.length === 0) {
          throw new UsepodError(
            'USEPOD_PLUGIN_INVALID',
            `plugin "${name}" registered a kind without a name`,
            {
              user: true,
              plugin: name,
            },
          );
        }
        if (!this.#kinds.has(kind)) this.#kinds.set(kind, registeredKind(kind, name, descriptor));
      },
      section: (section, schema) => features.claim(name, section, schema),
      hold: (holdName, o) => agent.hold(holdName, o),
      release: (holdName) => agent.release(holdName),
      provideJournal: (journal) => {
        const taken = features.provideJournal(name, journal, opts.byDefault);
        if (!taken) log.debug('another plugin provides the job journal; this one writes none');
        return taken;
      },
      notify: (n) =>
        agent.notify({
          type: 'notice',
          plugin: name,
          name: engineText(n.name, 40),
          severity: n.severity,
          title: engineText(n.title, 200),
          message: engineText(n.message, 1_000),
          resolved: n.resolved ?? false,
        }),
      metrics: pluginMetrics(agent.registry, name),
      statusSection: (section, read) => features.statusSection(name, section, read),
      statusRoute: (method, path, handle) => features.statusRoute(name, method, path, handle),
      doctorCheck: (check, fn) => features.doctorCheck(name, check, fn),
      agent,
      keyPath: expandHome(this.#config.identity.key_path),
      log,
      config: this.#config,
      coreVersion: AGENT_VERSION,
    };
    await plugin.apply(pluginView(this.hooks, name), Object.freeze(ctx));
    this.#plugins.push(plugin);
    log.debug('plugin applied', { kinds: plugin.kinds?.join(','), sections: plugin.sections?.join(',') });
  }
}
