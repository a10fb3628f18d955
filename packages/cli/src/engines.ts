import {
  AGENT_VERSION,
  type AgentPlugin,
  type BackendConfig,
  type BackendStatus,
  collectBackendFactories,
  silentLogger,
  validateConfig,
} from '@usepod-agent/core';
import llamacpp from '@usepod-agent/plugin-llamacpp';
import lmstudio from '@usepod-agent/plugin-lmstudio';
import ollama from '@usepod-agent/plugin-ollama';
import openaiCompatible from '@usepod-agent/plugin-openai-compatible';
import vllm from '@usepod-agent/plugin-vllm';

/** The first-party plugins the CLI ships with. */
export const BUILTIN_PLUGINS: AgentPlugin[] = [vllm(), llamacpp(), lmstudio(), ollama(), openaiCompatible()];

/** Engines on their usual ports (PROTOCOL.md section 9; llama.cpp moved from 8080 to 9931). */
export const WELL_KNOWN_ENGINES: { kind: string; url: string }[] = [
  { kind: 'vllm', url: 'http://127.0.0.1:8000' },
  { kind: 'llamacpp', url: 'http://127.0.0.1:8080' },
  { kind: 'llamacpp', url: 'http://127.0.0.1:9931' },
  { kind: 'lmstudio', url: 'http://127.0.0.1:1234' },
  { kind: 'ollama', url: 'http://127.0.0.1:11434' },
];

export interface ProbeTarget {
  kind: string;
  url?: string | undefined;
  entry?: BackendConfig;
  apiKey?: string | undefined;
  source: 'config' | 'detected' | 'flag';
}

export interface ProbeResult extends ProbeTarget {
  status: BackendStatus;
  latencyMs: number;
}

/** Probes engines through their plugins, all at once, each bounded by the plugin's own probe timeout. */
export async function probeEngines(
  targets: ProbeTarget[],
  plugins: AgentPlugin[] = BUILTIN_PLUGINS,
): Promise<ProbeResult[]> {
  const factories = await collectBackendFactories(plugins, validateConfig({}), silentLogger, AGENT_VERSION);
  return Promise.all(
    targets.map(async (t): Promise<ProbeResult> => {
      const factory = factories.get(t.kind);
      if (!factory) {
        return {
          ...t,
          status: { healthy: false, models: [], detail: `no plugin provides kind "${t.kind}"` },
          latencyMs: 0,
        };
      }
      const backend = factory(t.entry ?? ({ kind: t.kind, url: t.url } as BackendConfig), {
        apiKey: t.apiKey,
        log: silentLogger,
      });
      const started = performance.now();
      try {
        const status = await backend.probe(AbortSignal.timeout(3_000));
        return { ...t, status, latencyMs: Math.round(performance.now() - started) };
      } finally {
        await backend.close();
      }
    }),
  );
}

/** `KIND=URL` from a flag. */
export function parseEngineFlag(value: string): { kind: string; url: string } {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new Error(`--engine takes KIND=URL (got "${value}")`);
  return { kind: value.slice(0, eq), url: value.slice(eq + 1) };
}
