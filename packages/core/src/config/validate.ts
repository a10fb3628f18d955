import type { z } from 'zod';
import { UsepodError } from '../errors.js';
import { type BackendConfig, type Config, configSchema, DEFAULT_COORDINATOR_URL } from './schema.js';

export interface ValidateOptions {
  /** `--allow-insecure`: accept a `ws://` coordinator URL. */
  allowInsecure?: boolean;
  /** Where the config came from, named in every error. */
  source?: string;
  /** `file:line:column` of a key, where the file's text can tell (loadConfig gives it for TOML). */
  locate?: (key: string) => string | undefined;
}

/** Renders a zod path as the TOML key an operator would look for: `backends[1].url`. */
export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(top level)';
}

/** One mistake in a config: the key (as an operator writes it) and why it is wrong. */
export interface Mistake {
  key: string;
  why: string;
}

/** Every mistake of a config at once (issue 17), each with its place in the file where it can be found. */
export class ConfigMistakes extends UsepodError {
  readonly mistakes: readonly Mistake[];
  constructor(source: string | undefined, mistakes: Mistake[], locate?: (key: string) => string | undefined) {
    const where = (m: Mistake) => (source ? `${locate?.(m.key) ?? source}: ` : '');
    const lines = mistakes.map((m) => `${where(m)}${m.key}: ${m.why}`);
    const text =
      lines.length === 1
        ? lines[0]!
        : `${lines.length} mistakes in ${source ?? 'the config'}:\n  ${lines.join('\n  ')}`;
    super('USEPOD_CONFIG_INVALID', text, { user: true });
    this.mistakes = mistakes;
  }
}

/** Thrown by the checks below; collected by validateConfig. */
class Found extends Error {
  constructor(readonly mistake: Mistake) {
    super(mistake.why);
  }
}

function invalid(_source: string | undefined, key: string, why: string): Found {
  return new Found({ key, why });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type') return `expected ${issue.expected}`;
  return issue.message;
}

/** Validates a parsed config object into a typed `Config`, or throws every mistake at once. */
export function validateConfig(raw: unknown, opts: ValidateOptions = {}): Config {
  const { source } = opts;
  const parsed = configSchema.safeParse(raw ?? {});
  const mistakes: Mistake[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      let path = issue.path;
      // An unknown key inside a backend entry is reported as that key.
      if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) path = [...path, issue.keys[0]!];
      mistakes.push({ key: keyPath(path), why: describeIssue(issue) });
    }
  }
  // The checks the schema cannot express run too, on what has the right shape, so every mistake shows.
  const shape = (parsed.success ? parsed.data : (raw ?? {})) as Partial<Config>;
  const check = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof Found)) throw err;
      if (!mistakes.some((m) => m.key === err.mistake.key)) mistakes.push(err.mistake);
    }
  };
  const url = (shape.coordinator as { url?: unknown } | undefined)?.url;
  if (typeof url === 'string' || parsed.success)
    check(() => checkCoordinatorUrl(String(url ?? DEFAULT_COORDINATOR_URL), opts));
  const backends = Array.isArray(shape.backends) ? shape.backends : [];
  const wellFormed = backends.filter(
    (b): b is BackendConfig => !!b && typeof b === 'object' && typeof b.kind === 'string',
  );
  backends.forEach((b, i) => {
    if (wellFormed.includes(b as BackendConfig)) check(() => checkBackend(b as BackendConfig, i, source));
  });
  if (wellFormed.length === backends.length) check(() => checkDuplicates(wellFormed, source));
  const addr = (shape.observability as { prometheus_addr?: unknown } | undefined)?.prometheus_addr;
  if (typeof addr === 'string') check(() => checkPrometheusAddr(addr, source));
  if (mistakes.length > 0) throw new ConfigMistakes(source, mistakes, opts.locate);
  const config = (parsed as { data: Config }).data;
  return source ? { ...config, source } : config;
}

function checkCoordinatorUrl(url: string, opts: ValidateOptions): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(opts.source, 'coordinator.url', `is not a valid URL (got ${shown(url)})`);
  }
  if (parsed.protocol === 'wss:') return;
  if (parsed.protocol === 'ws:') {
    if (opts.allowInsecure) return;
    throw invalid(
      opts.source,
      'coordinator.url',
      'uses ws://, which is not encrypted; use wss://, or pass --allow-insecure for a local coordinator',
    );
  }
  throw invalid(opts.source, 'coordinator.url', `must use wss:// (got ${parsed.protocol}//)`);
}

function checkBackend(b: BackendConfig, i: number, source: string | undefined): void {
  const key = (k: string) => `backends[${i}].${k}`;
  if (b.url !== undefined) {
    let u: URL;
    try {
      u = new URL(b.url);
    } catch {
      throw invalid(source, key('url'), `is not a valid URL (got ${shown(b.url)})`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw invalid(source, key('url'), `must be an http:// or https:// URL (got ${u.protocol}//)`);
    }
  }
  // What each kind requires beyond this (a url, or a key) its plugin declares: see plugins/kinds.ts.
  if (b.url === undefined && b.api_key_env === undefined) {
    throw invalid(source, key('url'), `is required for kind "${b.kind}" (or api_key_env for a remote kind)`);
  }
  if (b.api_key_env !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(b.api_key_env)) {
    throw invalid(
      source,
      key('api_key_env'),
      'must be the name of an environment variable, not the key itself',
    );
  }
}

/**
 * The names of this machine's loopback interface. An engine reached as localhost, 127.0.0.1 or [::1] on one port is
 * one engine (issue 28: setup wrote a llama-server twice and the coordinator was told twice its slots).
 */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Normalised identity of a backend entry, used to find duplicates: one engine behind two names is one. */
export function backendIdentity(b: BackendConfig): string {
  if (b.url !== undefined) {
    // A url that does not parse is its own mistake (checkBackend); here it is compared as written.
    if (!URL.canParse(b.url)) return `${b.kind} ${b.url}`;
    const u = new URL(b.url);
    const path = u.pathname.replace(/\/+$/, '');
    // URL has lower-cased the host and dropped a default port; `port` is '' for it, so fill it back in.
    const host = LOOPBACK_NAMES.has(u.hostname) ? 'loopback' : u.hostname;
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return `${b.kind} ${u.protocol}//${host}:${port}${path}`;
  }
  return `${b.kind} env:${b.api_key_env ?? ''}`;
}

function sameHost(a: string, b: string | undefined): boolean {
  return b !== undefined && URL.canParse(a) && URL.canParse(b) && new URL(a).host === new URL(b).host;
}

function checkDuplicates(backends: BackendConfig[], source: string | undefined): void {
  const seen = new Map<string, number>();
  backends.forEach((b, i) => {
    const id = backendIdentity(b);
    const first = seen.get(id);
    if (first !== undefined) {
      const other = backends[first]!;
      const what =
        b.url === undefined
          ? `kind and api_key_env as backends[${first}]`
          : sameHost(b.url, other.url)
            ? `kind and url as backends[${first}]`
            : `kind and engine as backends[${first}] (${other.url} and ${b.url} are one port on this machine)`;
      throw invalid(source, `backends[${i}]`, `is a duplicate: same ${what}`);
    }
    seen.set(id, i);
  });
}

function checkPrometheusAddr(addr: string, source: string | undefined): void {
  if (addr === '' || addr === 'off') return;
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) {
    throw invalid(
      source,
      'observability.prometheus_addr',
      `must be host:port, or "off" (got ${shown(addr)})`,
    );
  }
}

/** A wrong value quoted in a message: escaped by JSON, at most 80 characters (a variable may be huge). */
function shown(v: unknown): string {
  const text = String(v);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}
