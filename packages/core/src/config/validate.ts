import type { z } from 'zod';
import { UsepodError } from '../errors.js';
import { type BackendConfig, type Config, configSchema } from './schema.js';

export interface ValidateOptions {
  /** `--allow-insecure`: accept a `ws://` coordinator URL. */
  allowInsecure?: boolean;
  /** Where the config came from, named in every error. */
  source?: string;
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

function invalid(source: string | undefined, key: string, why: string): UsepodError {
  const where = source ? `${source}: ` : '';
  return new UsepodError('USEPOD_CONFIG_INVALID', `${where}${key}: ${why}`, { user: true });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type') return `expected ${issue.expected}`;
  return issue.message;
}

/** Validates a parsed config object into a typed `Config`, or throws the first failure. */
export function validateConfig(raw: unknown, opts: ValidateOptions = {}): Config {
  const { source } = opts;
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    let path = issue.path;
    // An unknown key inside a backend entry is reported as that key.
    if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) path = [...path, issue.keys[0]!];
    throw invalid(source, keyPath(path), describeIssue(issue));
  }
  const config = parsed.data;
  checkCoordinatorUrl(config.coordinator.url, opts);
  config.backends.forEach((b, i) => {
    checkBackend(b, i, source);
  });
  checkDuplicates(config.backends, source);
  checkPrometheusAddr(config.observability.prometheus_addr, source);
  return source ? { ...config, source } : config;
}

function checkCoordinatorUrl(url: string, opts: ValidateOptions): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(opts.source, 'coordinator.url', `is not a valid URL (got ${JSON.stringify(url)})`);
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
      throw invalid(source, key('url'), `is not a valid URL (got ${JSON.stringify(b.url)})`);
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

/** Normalised identity of a backend entry, used to find duplicates. */
export function backendIdentity(b: BackendConfig): string {
  if (b.url !== undefined) {
    const u = new URL(b.url);
    const path = u.pathname.replace(/\/+$/, '');
    return `${b.kind} ${u.protocol}//${u.host}${path}`;
  }
  return `${b.kind} env:${b.api_key_env ?? ''}`;
}

function checkDuplicates(backends: BackendConfig[], source: string | undefined): void {
  const seen = new Map<string, number>();
  backends.forEach((b, i) => {
    const id = backendIdentity(b);
    const first = seen.get(id);
    if (first !== undefined) {
      const what =
        b.url !== undefined
          ? `kind and url as backends[${first}]`
          : `kind and api_key_env as backends[${first}]`;
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
      `must be host:port, or "off" (got ${JSON.stringify(addr)})`,
    );
  }
}
