/**
 * The common config keys from environment variables, for containers and orchestrators (a Kubernetes
 * Secret for the enrollment code, a ConfigMap or the Deployment's `env` for the rest): each variable
 * overrides its key in the file, and with no file at all the variables are the whole config. A mistake
 * in a value is reported at the variable's name, as a file's is at its line.
 */
export interface EnvKey {
  env: string;
  /** Dotted config key; `backends.0.*` builds (or replaces) the one backend. */
  key: string;
  type: 'string' | 'integer' | 'list';
}

export const ENV_KEYS: readonly EnvKey[] = [
  { env: 'USEPOD_COORDINATOR_URL', key: 'coordinator.url', type: 'string' },
  { env: 'USEPOD_ENROLLMENT_CODE', key: 'coordinator.enrollment_code', type: 'string' },
  { env: 'USEPOD_IDENTITY_PATH', key: 'identity.key_path', type: 'string' },
  { env: 'USEPOD_BACKEND_KIND', key: 'backends.0.kind', type: 'string' },
  { env: 'USEPOD_BACKEND_URL', key: 'backends.0.url', type: 'string' },
  { env: 'USEPOD_BACKEND_MODELS', key: 'backends.0.models', type: 'list' },
  { env: 'USEPOD_BACKEND_API_KEY_ENV', key: 'backends.0.api_key_env', type: 'string' },
  { env: 'USEPOD_MAX_CONCURRENT', key: 'limits.max_concurrent', type: 'integer' },
  { env: 'USEPOD_DRAIN_TIMEOUT_S', key: 'limits.drain_timeout_s', type: 'integer' },
  { env: 'USEPOD_SELFTEST_INTERVAL_S', key: 'selftest.interval_s', type: 'integer' },
  { env: 'USEPOD_PROMETHEUS_ADDR', key: 'observability.prometheus_addr', type: 'string' },
  { env: 'USEPOD_LOG_LEVEL', key: 'observability.log_level', type: 'string' },
  { env: 'USEPOD_LOG_FORMAT', key: 'observability.log_format', type: 'string' },
];

export interface EnvConfig {
  /** The config with the variables applied (a fresh object; the input is not changed). */
  raw: Record<string, unknown>;
  /** Config key → the variable it came from, for error places. */
  from: Map<string, string>;
}

/** True when any of the variables is set (non-empty). */
export function hasEnvConfig(env: NodeJS.ProcessEnv): boolean {
  return ENV_KEYS.some((k) => Boolean(env[k.env]));
}

function value(k: EnvKey, text: string): unknown {
  if (k.type === 'list') {
    return text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }
  // Not a number stays a string: validation then names the key (and so the variable) with what it expects.
  if (k.type === 'integer') return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
  return text;
}

export function applyEnv(raw: unknown, env: NodeJS.ProcessEnv): EnvConfig {
  const out = structuredClone((raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>);
  const from = new Map<string, string>();
  const backendVars = ENV_KEYS.filter((k) => k.key.startsWith('backends.0.') && env[k.env]);
  // A backend from the environment replaces the file's: "this container serves the engine beside it".
  if (backendVars.length > 0) {
    out.backends = [{}];
    // Its every key is then the environment's: a missing kind is reported at USEPOD_BACKEND_KIND.
    for (const k of ENV_KEYS.filter((e) => e.key.startsWith('backends.0.'))) {
      from.set(k.key.replace(/^backends\.0\./, 'backends[0].'), k.env);
    }
  }
  for (const k of ENV_KEYS) {
    const text = env[k.env];
    if (!text) continue;
    const path = k.key.split('.');
    let node: Record<string, unknown> | unknown[] = out;
    for (const part of path.slice(0, -1)) {
      const next = (node as Record<string, unknown>)[part];
      const child = next && typeof next === 'object' ? next : {};
      (node as Record<string, unknown>)[part] = child;
      node = child as Record<string, unknown>;
    }
    (node as Record<string, unknown>)[path.at(-1)!] = value(k, text);
    // Validation names backends as `backends[0].url`; both spellings map to the variable.
    from.set(k.key, k.env);
    from.set(k.key.replace(/^backends\.0\./, 'backends[0].'), k.env);
  }
  return { raw: out, from };
}
