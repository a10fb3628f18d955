import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import {
  type AgentPlugin,
  type BackendConfig,
  type BackendStatus,
  checkBackends,
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
  status: BackendStatus;
  latencyMs: number;
}

/** Probes engines through their plugins, all at once, each bounded by the plugin's own probe timeout. */
export async function probeEngines(targets: ProbeTarget[], plugins: AgentPlugin[]): Promise<ProbeResult[]> {
  const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
  for (const p of plugins) await host.apply(p);
  return Promise.all(
    targets.map(async (t): Promise<ProbeResult> => {
      const factory = host.kinds.get(t.kind)?.create;
      if (!factory) {
        return {
          ...t,
          label: undefined,
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
        const status = await backend.probe(AbortSignal.timeout(3_000));
        return { ...t, label: backend.label, status, latencyMs: Math.round(performance.now() - started) };
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

/** `KIND=URL` from a flag. */
export function parseEngineFlag(value: string): { kind: string; url: string } {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new Error(`--engine takes KIND=URL (got "${value}")`);
  return { kind: value.slice(0, eq), url: value.slice(eq + 1) };
}
