import { expandHome } from '../config/paths.js';
import type { Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { pluginMetrics } from '../observability/plugin-metrics.js';
import { Registry } from '../observability/prom.js';
import { engineText } from '../untrusted.js';
import { AGENT_VERSION } from '../version.js';
import { bounded, isPluginName, PLUGIN_LOAD_MS } from './bounded.js';
import { Features } from './features.js';
import { type AgentEvent, type AgentHooks, createHooks, pluginView } from './hooks.js';
import { type BackendKind, type RegisteredKind, registeredKind } from './kinds.js';
import {
  type AgentAccess,
  type AgentPlugin,
  checkContract,
  type HoldOptions,
  type PluginContext,
} from './plugin.js';

/** What a plugin's holds act on: the agent's, or nothing for a host that runs no agent. */
export interface HoldTarget {
  hold(name: string, opts: HoldOptions): void;
  release(name: string): void;
  /** Publishes a plugin's notice on the observation stream. */
  notify(event: Extract<AgentEvent, { type: 'notice' }>): void;
  /** Publishes a plugin's message to the others on the observation stream. */
  publish(event: Extract<AgentEvent, { type: 'plugin' }>): void;
  /** The registry plugin metrics join (`/metrics`). */
  readonly registry: Registry;
}

/** The longest backend kind a plugin may register: config names it in `[[backends]] kind`. */
const MAX_KIND = 100;

/** The most JSON a plugin's message may carry: a few figures, not a stream. */
export const MAX_MESSAGE_CHARS = 16 * 1024;

/**
 * A plugin's message as the others receive it: a frozen plain-JSON copy (no sender's object to mutate,
 * no cycle, no function), bounded; a topic or value outside the rules is the sender's bug, said in one line.
 */
function message(plugin: string, topic: string, data: unknown): unknown {
  const refuse = (why: string) =>
    new UsepodError('USEPOD_PLUGIN_INVALID', `plugin "${plugin}" published ${why}`, { user: true, plugin });
  if (typeof topic !== 'string' || !/^[a-z][a-z0-9._-]{0,63}$/.test(topic))
    throw refuse(
      `on the topic "${engineText(String(topic), 80)}": use lowercase letters, digits, ".", "_" and "-"`,
    );
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (err) {
    throw refuse(
      `on "${topic}" a value that is not JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (text === undefined) throw refuse(`on "${topic}" a value that is not JSON`);
  if (text.length > MAX_MESSAGE_CHARS)
    throw refuse(`on "${topic}" ${text.length} characters of JSON, over ${MAX_MESSAGE_CHARS}`);
  return deepFreeze(JSON.parse(text));
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** The agent seen from a host that runs none (`backends`, `setup`, the conformance suite). */
const NO_AGENT: AgentAccess & HoldTarget = {
  pause: () => {},
  resume: () => {},
  holds: () => [],
  selftest: () => Promise.resolve([]),
  selftestResults: () => [],
  configuredKinds: () => [],
  backends: () => [],
  status: () => undefined,
  jobs: () => [],
  hold: () => {},
  release: () => {},
  notify: () => {},
  publish: () => {},
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
  readonly #loadMs: number;

  constructor(opts: {
    config: Readonly<Config>;
    log: Logger;
    hooks?: AgentHooks;
    agent?: AgentAccess & HoldTarget;
    /** How long a plugin's `apply` may take (default PLUGIN_LOAD_MS). */
    loadMs?: number | undefined;
  }) {
    this.#loadMs = opts.loadMs ?? PLUGIN_LOAD_MS;
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
        if (!isPluginName(kind, MAX_KIND)) {
          throw new UsepodError(
            'USEPOD_PLUGIN_INVALID',
            `plugin "${name}" registered a kind that is no name (1 to ${MAX_KIND} characters, no control character)`,
            { user: true, plugin: name },
          );
        }
        const had = this.#kinds.get(kind);
        // The first plugin to register a kind keeps it (one given in code, then one installed): said, since
        // the other's engine entries then run through a plugin its author did not mean them for.
        if (had && had.plugin !== name)
          log.warn(`kind "${kind}" is already provided by ${had.plugin}; this plugin's is not used`);
        if (!had) this.#kinds.set(kind, registeredKind(kind, name, descriptor));
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
      publish: (topic, data) =>
        agent.publish({ type: 'plugin', from: name, topic, data: message(name, topic, data) }),
      metrics: pluginMetrics(agent.registry, name),
      statusSection: (section, read) => features.statusSection(name, section, read),
      statusRoute: (method, path, handle, opts) =>
        features.statusRoute(name, method, path, handle, opts?.auth),
      doctorCheck: (check, fn) => features.doctorCheck(name, check, fn),
      agent,
      keyPath: expandHome(this.#config.identity.key_path),
      log,
      config: this.#config,
      coreVersion: AGENT_VERSION,
    };
    const frozen = Object.freeze(ctx);
    await bounded(() => plugin.apply(pluginView(this.hooks, name), frozen), name, 'apply()', this.#loadMs);
    this.#plugins.push(plugin);
    log.debug('plugin applied', { kinds: plugin.kinds?.join(','), sections: plugin.sections?.join(',') });
  }
}
