import type { BackendContext, BackendFactory } from '../backend/backend.js';
import { locatorFor } from '../config/load.js';
import type { BackendConfig, Config } from '../config/schema.js';
import { ConfigMistakes, type Mistake } from '../config/validate.js';
import { UsepodError } from '../errors.js';
import { engineText } from '../untrusted.js';
import { isPluginName } from './bounded.js';
import { type OptionsSchema, parseStandard } from './standard-schema.js';

/**
 * What a plugin says about a backend kind it provides, so that core and the CLI need to know no engine by
 * name (issue 16): how to create one, its options, what an entry must name, where `setup` and `backends`
 * look for it, how it ranks in routing, and whether it is a remote pass-through priced upstream.
 */

export type { OptionsSchema } from './standard-schema.js';

export interface BackendKind<O = Record<string, unknown>> {
  /** Makes the backend of one `[[backends]]` entry; `entry.options` is what `options` parsed. */
  create(entry: BackendConfig & { options?: O }, ctx: BackendContext): ReturnType<BackendFactory>;
  /** The entry's `options`; without a schema, an entry with options is refused. */
  options?: OptionsSchema<O>;
  /**
   * What an entry must name: `url` (an engine at an address: the default), `api_key` (a remote API with a
   * preset address: `api_key_env` required, `url` optional), or `url_or_api_key`.
   */
  requires?: 'url' | 'api_key' | 'url_or_api_key';
  /** Ports on 127.0.0.1 where `setup` and `backends` look for this engine when nothing is configured. */
  defaultPorts?: readonly number[];
  /** Routing preference among engines serving one model: lower first (default 100). */
  priority?: number;
  /** A remote pass-through: the upstream prices its models and the entry's `markup` is added on top. */
  remote?: boolean;
  /** A human name for listings (default: the kind). */
  title?: string;
  /**
   * Parts of this engine's process names as `nvidia-smi` lists them (`VLLM::EngineCore`, `llama-server`):
   * GPU-aware yielding tells the engines from the owner's own programs by them.
   */
  processNames?: readonly string[];
  /**
   * How to give a model a name in this engine (`start llama-server with --alias NAME`): `setup`, `backends`
   * and `doctor` say it beside a model the engine lists by its file's path, a name no job asks for.
   */
  modelNaming?: string;
}

/** A kind as registered: the descriptor, with defaults, and the plugin that gave it. */
export interface RegisteredKind extends Required<Pick<BackendKind, 'requires' | 'priority' | 'remote'>> {
  readonly kind: string;
  readonly plugin: string;
  readonly title: string;
  readonly defaultPorts: readonly number[];
  readonly processNames: readonly string[];
  readonly modelNaming: string | undefined;
  readonly options: OptionsSchema | undefined;
  create: BackendKind['create'];
}

/** `registerBackend(kind, factory)` (a plain factory) or `registerBackend(kind, descriptor)`. */
export function registeredKind(
  kind: string,
  plugin: string,
  given: BackendKind | BackendFactory,
): RegisteredKind {
  const d: BackendKind = typeof given === 'function' ? { create: given } : given;
  if (typeof d?.create !== 'function') {
    throw new UsepodError(
      'USEPOD_PLUGIN_INVALID',
      `plugin "${plugin}" registered kind "${kind}" without a create() function`,
      {
        user: true,
        plugin,
      },
    );
  }
  // What setup, backends and doctor show, and what they probe or match, taken as what it should be: a
  // plugin's text folded (its escapes never reach the terminal), ports that are ports, names that are names
  // (an empty process name would match every program on the GPU).
  const text = (v: unknown, max: number) =>
    typeof v === 'string' && v !== '' ? engineText(v, max) : undefined;
  const list = <T>(v: unknown, ok: (x: unknown) => x is T): T[] =>
    Array.isArray(v) ? v.filter(ok).slice(0, 32) : [];
  return {
    kind,
    plugin,
    title: text(d.title, 80) ?? kind,
    requires: d.requires === 'api_key' || d.requires === 'url_or_api_key' ? d.requires : 'url',
    priority: typeof d.priority === 'number' && Number.isFinite(d.priority) ? d.priority : 100,
    remote: d.remote === true,
    defaultPorts: list(
      d.defaultPorts,
      (p): p is number => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536,
    ),
    processNames: list(d.processNames, (n): n is string => isPluginName(n, 100)),
    modelNaming: text(d.modelNaming, 300),
    options: d.options as OptionsSchema | undefined,
    create: d.create as BackendKind['create'],
  };
}

/** Parses an entry's `options` with its kind's schema, or says what is wrong with them. */
function parseOptions(k: RegisteredKind, entry: BackendConfig, key: string): BackendConfig | Mistake[] {
  if (entry.options === undefined) {
    if (!k.options) return entry;
  } else if (!k.options) {
    return [{ key: `${key}.options`, why: `kind "${k.kind}" takes no options` }];
  }
  const r = parseStandard(k.options!, entry.options ?? {}, `${key}.options`);
  if (r.mistakes) return r.mistakes;
  return { ...entry, options: r.value as Record<string, unknown> };
}

/**
 * Checks every `[[backends]]` entry against what its kind's plugin declared (what it requires, its
 * options), and returns the entries with their options parsed; every mistake at once, each at its
 * `file:line:column` when the config came from a file.
 */
export function checkBackends(config: Config, kinds: ReadonlyMap<string, RegisteredKind>): BackendConfig[] {
  const mistakes: Mistake[] = [];
  const out = config.backends.map((entry, i) => {
    const key = `backends[${i}]`;
    const k = kinds.get(entry.kind);
    if (!k) {
      mistakes.push({ key: `${key}.kind`, why: `no loaded plugin provides kind "${entry.kind}"` });
      return entry;
    }
    if (k.requires === 'url' && entry.url === undefined) {
      mistakes.push({ key: `${key}.url`, why: `is required for kind "${entry.kind}"` });
      return entry;
    }
    if (k.requires === 'api_key' && entry.api_key_env === undefined) {
      mistakes.push({
        key: `${key}.api_key_env`,
        why: `is required for kind "${entry.kind}" (the environment variable holding the API key)`,
      });
      return entry;
    }
    const parsed = parseOptions(k, entry, key);
    if (Array.isArray(parsed)) {
      mistakes.push(...parsed);
      return entry;
    }
    return parsed;
  });
  if (mistakes.length > 0) throw new ConfigMistakes(config.source, mistakes, locatorFor(config.source));
  return out;
}
