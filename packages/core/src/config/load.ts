import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import { parse as parseToml } from 'smol-toml';
import { UsepodError } from '../errors.js';
import { readLogLevel } from './log-level.js';
import { expandHome, type PlatformSpec, platformConfigFiles } from './paths.js';
import type { Config } from './schema.js';
import { type ValidateOptions, validateConfig } from './validate.js';

const MODULE = 'usepod';

const loadToml: Loader = (filepath, content) => {
  try {
    return parseToml(content);
  } catch (err) {
    // smol-toml messages carry line and column; keep them, they say where to look.
    throw new UsepodError('USEPOD_CONFIG_PARSE', `${filepath}: ${(err as Error).message.split('\n')[0]}`, {
      user: true,
      cause: err,
    });
  }
};

/** TypeScript configs go through tsx when it is installed (TypeScript 7 has no JS API for cosmiconfig). */
const loadTs: Loader = async (filepath) => {
  let api: { tsImport: (spec: string, parent: string) => Promise<{ default?: unknown }> };
  try {
    api = (await import('tsx/esm/api')) as typeof api;
  } catch {
    throw new UsepodError(
      'USEPOD_CONFIG_PARSE',
      `${filepath}: a TypeScript config needs the "tsx" package; install it (npm i -D tsx) or use agent.toml`,
      { user: true },
    );
  }
  const mod = await api.tsImport(pathToFileURL(filepath).href, import.meta.url);
  // Outside a "type": "module" package the file loads as CommonJS, one `default` deeper.
  let value: unknown = mod.default ?? mod;
  if (value && typeof value === 'object' && 'default' in value)
    value = (value as { default: unknown }).default;
  return value;
};

/** The config file names searched in a folder, most specific first. */
export const SEARCH_PLACES = [
  'agent.toml',
  'package.json',
  `.${MODULE}rc`,
  `.${MODULE}rc.json`,
  `.${MODULE}rc.yaml`,
  `.${MODULE}rc.yml`,
  `.${MODULE}rc.toml`,
  `.${MODULE}rc.js`,
  `.${MODULE}rc.mjs`,
  `.${MODULE}rc.cjs`,
  `${MODULE}.config.js`,
  `${MODULE}.config.mjs`,
  `${MODULE}.config.cjs`,
  `${MODULE}.config.ts`,
  `${MODULE}.config.toml`,
];

function explorer() {
  return cosmiconfig(MODULE, {
    searchPlaces: SEARCH_PLACES,
    loaders: { '.toml': loadToml, '.ts': loadTs, '.mts': loadTs, '.cts': loadTs },
    searchStrategy: 'none',
    cache: false,
  });
}

export interface LoadConfigOptions extends Omit<ValidateOptions, 'source'> {
  /** `--config PATH`; any supported form. Without it, the default lookup applies. */
  path?: string;
  /** Folder for the `./agent.toml` step of the lookup; defaults to the process cwd. */
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file read. */
  path: string;
  /** What the operator should fix but that does not stop the agent (file permissions), one line each. */
  warnings: string[];
}

/**
 * The config names the coordinator and may hold the enrollment code: a file others can write could send
 * the agent (and its key's signature) elsewhere, and one others can read gives the code away.
 */
async function permissionWarnings(path: string, config: Config): Promise<string[]> {
  if (process.platform === 'win32') return [];
  const mode = (await stat(path).catch(() => undefined))?.mode;
  if (mode === undefined) return [];
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  if (mode & 0o022) {
    return [`config file ${path} can be changed by group or others (mode ${octal}); run: chmod 600 ${path}`];
  }
  if (mode & 0o044 && config.coordinator.enrollment_code) {
    return [
      `config file ${path} holds the enrollment code and is readable by group or others (mode ${octal}); run: chmod 600 ${path}`,
    ];
  }
  return [];
}

/**
 * Finds, parses and validates the config. Default lookup (PROTOCOL.md section 8):
 * the platform config dir's agent.toml, then ./agent.toml, then the other forms
 * in the current folder (.usepodrc*, usepod.config.*, package.json "usepod").
 */
export async function loadConfig(opts: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const path = opts.path
    ? resolve(opts.cwd ?? process.cwd(), expandHome(opts.path))
    : await findConfigFile(opts.cwd);
  if (!path) {
    throw new UsepodError(
      'USEPOD_CONFIG_NOT_FOUND',
      `no config file found (looked in ${[...platformConfigFiles(), './agent.toml'].join(', ')}); run \`usepod-agent setup\` or pass --config PATH`,
      { user: true },
    );
  }
  const raw = await readConfigFile(path);
  const config = validateConfig(raw, { ...opts, source: path });
  const warnings = await permissionWarnings(path, config);
  const level = (raw as { observability?: { log_level?: unknown } } | undefined)?.observability?.log_level;
  const note = typeof level === 'string' ? readLogLevel(level).note : undefined;
  if (note) warnings.push(`${path}: observability.${note}`);
  return { config, path, warnings };
}

/** The file the default lookup would read, or undefined. */
export async function findConfigFile(
  cwd = process.cwd(),
  spec: PlatformSpec = {},
): Promise<string | undefined> {
  for (const file of platformConfigFiles(spec)) if (existsSync(file)) return file;
  const found = await explorer().search(cwd);
  return found && !found.isEmpty ? found.filepath : undefined;
}

export async function readConfigFile(path: string): Promise<unknown> {
  if (!existsSync(path)) {
    throw new UsepodError('USEPOD_CONFIG_NOT_FOUND', `config file ${path} does not exist`, { user: true });
  }
  try {
    const result = await explorer().load(path);
    if (!result || result.isEmpty) return {};
    return result.config;
  } catch (err) {
    if (err instanceof UsepodError) throw err;
    const msg = (err as Error).message.split('\n')[0];
    throw new UsepodError('USEPOD_CONFIG_PARSE', `${path}: ${msg}`, { user: true, cause: err });
  }
}

/** True when a path names a TOML file (setup writes TOML). */
export function isTomlPath(p: string): boolean {
  return extname(p) === '.toml';
}
