import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Config as OclifConfig } from '@oclif/core/interfaces';
import {
  type Agent,
  type AgentPlugin,
  type BackendConfig,
  type Config,
  type ConfigInput,
  createAgent,
  silentLogger,
} from '@usepod-agent/core';
import {
  type BackendProbe,
  backendIdentity,
  probeBackends,
  type RegisteredKind,
} from '@usepod-agent/core/cli';
import { agentPlugins, pluginOfModule, pluginSearchRoots } from './plugins.js';

/** The CLI's own package.json: its dependencies name the plugins it ships. */
const require = createRequire(import.meta.url);
const pjson = require('../package.json') as { dependencies?: Record<string, string> };

/** A package named like a plugin (the rule core's loader follows too). */
const PLUGIN_NAME = /^(?:@usepod-agent\/plugin-|(?:@[^/]+\/)?usepod-agent-plugin-)/;

/** The plugins the CLI ships with: its dependencies named like plugins. It knows no engine by name. */
export async function builtinPlugins(): Promise<AgentPlugin[]> {
  const names = Object.keys(pjson.dependencies ?? {}).filter((n) => PLUGIN_NAME.test(n));
  return Promise.all(
    names.map(async (name) => pluginOfModule(await import(pathToFileURL(require.resolve(name)).href), name)),
  );
}

/**
 * An agent loaded as `run` loads it (the installed and linked plugins, the search roots, the defaults),
 * never started: `backends`, `doctor` and `selftest` see the config exactly as `validate` and `run` do.
 */
export async function offlineAgent(cli: OclifConfig, config: Config | ConfigInput): Promise<Agent> {
  return createAgent({
    config,
    allowInsecure: true,
    logger: silentLogger,
    plugins: await agentPlugins(cli),
    pluginSearchRoots: pluginSearchRoots(cli),
  });
}

/** The kinds those plugins provide, by routing priority, with their titles and default ports. */
export async function knownKinds(plugins: AgentPlugin[]): Promise<RegisteredKind[]> {
  const agent = createAgent({ config: {}, plugins, defaultPlugins: false, logger: silentLogger });
  await agent.load();
  return [...agent.kinds.values()].sort((a, b) => a.priority - b.priority);
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

export interface ProbeResult {
  kind: string;
  url: string | undefined;
  source: 'config' | 'detected' | 'flag';
  /** The backend's label, as the running agent names it in `status` and its self-tests. */
  label: string | undefined;
  /** How to name a model in this engine, from its plugin (`BackendKind.modelNaming`). */
  naming: string | undefined;
  status: BackendProbe['status'];
  latencyMs: number;
}

const resultOf = (p: BackendProbe, source: ProbeResult['source'], agent: Agent): ProbeResult => ({
  kind: p.entry.kind,
  url: p.entry.url,
  source,
  label: p.label,
  naming: agent.kinds.get(p.entry.kind)?.modelNaming,
  status: p.status,
  latencyMs: p.latencyMs,
});

/**
 * The configured backends, opened and probed as `run` opens them: a mistake in an entry is refused as
 * `validate` refuses it (`backends[i]`, the file). `allowList: false` probes what each engine serves
 * whatever `models` keeps, so `doctor` can say what the list drops.
 */
export async function probeConfigured(
  cli: OclifConfig,
  config: Config,
  opts: { allowList?: boolean } = {},
): Promise<ProbeResult[]> {
  const backends =
    opts.allowList === false ? config.backends.map(({ models: _allow, ...entry }) => entry) : config.backends;
  const agent = await offlineAgent(cli, { ...config, backends });
  return (await probeBackends(agent)).map((p) => resultOf(p, 'config', agent));
}

/** Engines found on their usual ports or named by a flag, each probed through its kind's plugin. */
export async function probeEngines(
  targets: { kind: string; url: string; source: 'detected' | 'flag' }[],
  plugins: AgentPlugin[],
): Promise<ProbeResult[]> {
  const kinds = new Set((await knownKinds(plugins)).map((k) => k.kind));
  // A flag's URL that is none is that target's row, not a config mistake at an index it never had.
  const known = targets.filter((t) => kinds.has(t.kind) && URL.canParse(t.url));
  const agent = createAgent({
    config: { backends: known.map(({ kind, url }) => ({ kind, url })) },
    plugins,
    defaultPlugins: false,
    allowInsecure: true,
    logger: silentLogger,
  });
  const probes = known.length > 0 ? await probeBackends(agent) : [];
  return targets.map((t) => {
    const i = known.indexOf(t);
    if (i >= 0) return resultOf(probes[i]!, t.source, agent);
    const detail = kinds.has(t.kind) ? `not a URL: ${t.url}` : `no plugin provides kind "${t.kind}"`;
    return {
      ...t,
      label: undefined,
      naming: undefined,
      status: { healthy: false, models: [], detail },
      latencyMs: 0,
    };
  });
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
