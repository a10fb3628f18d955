import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import {
  type AgentPlugin,
  type BackendConfig,
  type BackendStatus,
  backendIdentity,
  checkBackends,
  checkStatus,
  PluginHost,
  pluginFromModule,
  type RegisteredKind,
  silentLogger,
  validateConfig,
} from '@usepod-agent/core/internal';

/** The CLI's own package.json: its dependencies name the plugins it ships. */
const require = createRequire(import.meta.url);
const pjson = require('../package.json') as { dependencies?: Record<string, string> };

/** A package named like a plugin (the rule core's loader follows too). */
const PLUGIN_NAME = /^(?:@usepod-agent\/plugin-|(?:@[^/]+\/)?usepod-agent-plugin-)/;

/** The plugins the CLI ships with: its dependencies named like plugins. It knows no engine by name. */
export async function builtinPlugins(): Promise<AgentPlugin[]> {
  const names = Object.keys(pjson.dependencies ?? {}).filter((n) => PLUGIN_NAME.test(n));
  return Promise.all(
    names.map(async (name) =>
      pluginFromModule(await import(pathToFileURL(require.resolve(name)).href), name),
    ),
  );
}

/** The kinds those plugins provide, by routing priority, with their titles and default ports. */
export async function knownKinds(plugins: AgentPlugin[]): Promise<RegisteredKind[]> {
  const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
  for (const p of plugins) await host.apply(p);
  return [...host.kinds.values()].sort((a, b) => a.priority - b.priority);
}

/** Engines on their usual ports, as their plugins declare them (`BackendKind.defaultPorts`). */
export async function wellKnownEngines(plugins: AgentPlugin[]): Promise<{ kind: string; url: string }[]> {
  return (await knownKinds(plugins)).flatMap((k) =>
    k.defaultPorts.map((port) => ({ kind: k.kind, url: `http://127.0.0.1:${port}` })),
  );
}

/** "vLLM 8000, llama.cpp 8080/9931, ...": the usual ports, for messages. */
export async function usualPorts(plugins: AgentPlugin[]): Promise<string> {
  return (await knownKinds(plugins))
    .filter((k) => k.defaultPorts.length > 0)
    .map((k) => `${k.title} ${k.defaultPorts.join('/')}`)
    .join(', ');
}

export interface ProbeTarget {
  kind: string;
  url?: string | undefined;
  entry?: BackendConfig;
  apiKey?: string | undefined;
  source: 'config' | 'detected' | 'flag';
}

export interface ProbeResult extends ProbeTarget {
  /** The backend's label, as the running agent names it in `status` and its self-tests. */
  label: string | undefined;
  /** How to name a model in this engine, from its plugin (`BackendKind.modelNaming`). */
  naming: string | undefined;
  status: BackendStatus;
  latencyMs: number;
}

/** Probes engines through their plugins, all at once, each bounded by the plugin's own probe timeout. */
export async function probeEngines(targets: ProbeTarget[], plugins: AgentPlugin[]): Promise<ProbeResult[]> {
  const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
  for (const p of plugins) await host.apply(p);
  return Promise.all(
    targets.map(async (t): Promise<ProbeResult> => {
      const kind = host.kinds.get(t.kind);
      const factory = kind?.create;
      if (!factory) {
        return {
          ...t,
          label: undefined,
          naming: undefined,
          status: { healthy: false, models: [], detail: `no plugin provides kind "${t.kind}"` },
          latencyMs: 0,
        };
      }
      const backend = factory(entryFor(t, host), {
        apiKey: t.apiKey,
        log: silentLogger,
      });
      const started = performance.now();
      try {
        // Checked as the agent checks it (valid ids, bounded figures, folded detail): what is listed is what is served.
        const { status } = checkStatus(await backend.probe(AbortSignal.timeout(3_000)));
        return {
          ...t,
          label: backend.label,
          naming: kind.modelNaming,
          status,
          latencyMs: Math.round(performance.now() - started),
        };
      } finally {
        await backend.close();
      }
    }),
  );
}

/** The entry a probe creates its backend from: a configured one with its options parsed by its kind. */
function entryFor(t: ProbeTarget, host: PluginHost): BackendConfig {
  if (!t.entry) return { kind: t.kind, url: t.url } as BackendConfig;
  const [parsed] = checkBackends({ ...validateConfig({}), backends: [t.entry] }, host.kinds);
  return parsed!;
}

/**
 * One target per engine, the first named winning: `--engine llamacpp=http://localhost:8080` and the scan's
 * 127.0.0.1:8080 are one llama-server, which written twice would be offered twice its slots (issue 28).
 */
export function oneTargetPerEngine<T extends { kind: string; url?: string | undefined }>(targets: T[]): T[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    if (t.url === undefined) return true;
    const id = backendIdentity({ kind: t.kind, url: t.url } as BackendConfig);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** A model id that is a file's path: `model.gguf`, `/models/x`, `./x`, `../x`, `~/x`, `C:\\x`. */
const FILE_PATH_ID = /\.gguf$|^(?:\/|\.\.?[\\/]|~[\\/]|[A-Za-z]:[\\/])/i;

/**
 * What to do about a model id that is the path of the file an engine loaded (llama-server lists `-m`'s
 * argument unless started with `--alias`): jobs ask for models by name, and no one asks for a path. The
 * way to name it is the engine's, as its plugin says it (`BackendKind.modelNaming`).
 */
export function modelIdHint(id: string, naming: string | undefined): string | undefined {
  return FILE_PATH_ID.test(id)
    ? `${id} is a file path, not a model name: ${nameTheModel(naming)}`
    : undefined;
}

export const nameTheModel = (naming: string | undefined): string =>
  naming ?? 'give it a name in the engine, the one jobs will ask for';

/** `KIND=URL` from a flag. */
export function parseEngineFlag(value: string): { kind: string; url: string } {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new Error(`--engine takes KIND=URL (got "${value}")`);
  return { kind: value.slice(0, eq), url: value.slice(eq + 1) };
}
