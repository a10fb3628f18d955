import { accessSync, constants } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Loader } from 'cosmiconfig';
import { parse as parseToml } from 'smol-toml';
import { UsepodError } from '../errors.js';
import { readLocalText, readLocalTextSync } from '../local-file.js';
import { applyEnv, hasEnvConfig } from './env.js';
import { at, locateTomlKey, positionOf } from './locate.js';
import { readLogLevel } from './log-level.js';
import { expandHome, type PlatformSpec, platformConfigFiles } from './paths.js';
import type { Config } from './schema.js';
import { type ValidateOptions, validateConfig } from './validate.js';

const MODULE = 'usepod';

const loadToml: Loader = (filepath, content) => {
  try {
    return parseToml(content);
  } catch (err) {
    // smol-toml knows the line and column: `file:line:column: what`, as editors and compilers print.
    const e = err as Error & { line?: number; column?: number };
    const what = e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    const pos =
      typeof e.line === 'number' && typeof e.column === 'number'
        ? { line: e.line, column: e.column }
        : undefined;
    throw new UsepodError('USEPOD_CONFIG_PARSE', `${at(filepath, pos)}: ${what}`, { user: true, cause: err });
  }
};

/** A YAML or JSON error from cosmiconfig as `file:line:column: what` (their messages bury both). */
function parseError(
  path: string,
  text: string,
  err: Error & { reason?: string; mark?: { line: number; column: number } },
): string {
  if (err.mark && err.reason) {
    return `${at(path, { line: err.mark.line + 1, column: err.mark.column + 1 })}: ${err.reason}`;
  }
  const message = String(err.message);
  const offset = /at position (\d+)/.exec(message);
  const what =
    /^\s*((?:Unexpected|Expected|Bad control|Unterminated)[^\n]*?)(?: in JSON)?(?: at position \d+)?(?: while parsing.*)?\s*$/m.exec(
      message,
    )?.[1];
  if (offset) {
    return `${at(path, positionOf(text, Number(offset[1])))}: ${what ?? 'not valid JSON'}`;
  }
  return `${path}: ${message.split('\n').find((l) => l.trim() && !l.includes(path)) ?? message.split('\n')[0]}`;
}

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

/** The loader of each form but TOML: cosmiconfig's own (its JSON and YAML parsers, its JS import), TypeScript through tsx. */
async function loaderFor(ext: string): Promise<Loader | undefined> {
  // Imported for these forms only: with its parsers, ~20 modules `run` with agent.toml never needs.
  const { defaultLoaders } = await import('cosmiconfig');
  const loaders: Record<string, Loader> = {
    ...defaultLoaders,
    '.ts': loadTs,
    '.mts': loadTs,
    '.cts': loadTs,
  };
  const key = ext || 'noExt';
  return Object.hasOwn(loaders, key) ? loaders[key] : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A config other than TOML from the text already read: given to cosmiconfig's loaders, not to its `load`,
 * which would read the path again, unbounded (a FIFO swapped in there hangs the start; another file would
 * be validated than the one checked). A JS or TS config is code: Node reads it again to run it.
 */
async function parseOther(path: string, text: string): Promise<unknown> {
  const ext = extname(path);
  const loader = await loaderFor(ext);
  if (!loader) {
    throw new UsepodError(
      'USEPOD_CONFIG_PARSE',
      `${path}: not a config form this agent reads; name it .toml, .json, .yaml, .yml, .js, .mjs, .cjs or .ts`,
      { user: true },
    );
  }
  let value = await loader(path, text);
  // A package.json (or package.yaml...) holds the config under its "usepod" key, as cosmiconfig has it.
  if (basename(path, ext) === 'package') value = isRecord(value) ? value[MODULE] : undefined;
  // cosmiconfig's load merged the files a "$import" names, read unbounded; its loaders do not.
  if (isRecord(value) && Object.hasOwn(value, '$import')) {
    throw new UsepodError(
      'USEPOD_CONFIG_PARSE',
      `${path}: "$import" is not supported (other files are not read); put their settings in this file`,
      { user: true },
    );
  }
  return value ?? {};
}

export interface LoadConfigOptions extends Omit<ValidateOptions, 'source'> {
  /** `--config PATH`; any supported form. Without it, the default lookup applies. */
  path?: string;
  /** Folder for the `./agent.toml` step of the lookup; defaults to the process cwd. */
  cwd?: string;
  /** Where the USEPOD_* variables of config/env.ts are read; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** `LoadedConfig.path` when the environment alone made the config (no file anywhere). */
export const FROM_ENVIRONMENT = '(environment)';

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file read, or FROM_ENVIRONMENT. */
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
  const env = opts.env ?? process.env;
  const path = opts.path
    ? resolve(opts.cwd ?? process.cwd(), expandHome(opts.path))
    : await findConfigFile(opts.cwd);
  if (!path && hasEnvConfig(env)) {
    // A container's way: no file, the USEPOD_* variables say it all.
    const { raw, from } = applyEnv({}, env);
    const locate = (key: string) => (from.has(key) ? `$${from.get(key)}` : FROM_ENVIRONMENT);
    const config = validateConfig(raw, { ...opts, source: FROM_ENVIRONMENT, locate });
    return { config, path: FROM_ENVIRONMENT, warnings: [] };
  }
  if (!path) {
    throw new UsepodError(
      'USEPOD_CONFIG_NOT_FOUND',
      `no config file found (looked in ${[...platformConfigFiles(), './agent.toml'].join(', ')}); run \`usepod-agent setup\` or pass --config PATH`,
      { user: true },
    );
  }
  const source = await readConfigSource(path);
  const { raw, from } = applyEnv(source.value, env);
  // The text read once: a TOML key found wrong is named at its line and column in it.
  const text = isTomlPath(path) ? source.text : '';
  const inFile = text ? (key: string) => at(path, locateTomlKey(text, key)) : undefined;
  // A value a variable set is reported at the variable, whatever the file says there.
  const locate = (key: string) => (from.has(key) ? `$${from.get(key)}` : inFile?.(key));
  const config = validateConfig(raw, { ...opts, source: path, locate });
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
  // A file this user may not read is an error, not an absence: skipping it would run on other settings
  // (in a container, the environment's alone) without a word.
  for (const file of platformConfigFiles(spec)) if (readable(file)) return file;
  // The current folder is looked at without loading anything: a JS or TS config runs when it is read.
  for (const place of SEARCH_PLACES) {
    const file = join(resolve(cwd), place);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile() || st.size === 0) continue;
    if (place === 'package.json' && !(await hasOwnKey(file))) continue;
    await refuseUnsafe(file, st);
    return file;
  }
  return undefined;
}

async function hasOwnKey(packageJson: string): Promise<boolean> {
  try {
    const read = await readLocalText(packageJson, MAX_CONFIG_BYTES);
    if (read.kind !== 'text') return false;
    const pkg = JSON.parse(read.text) as unknown;
    return Boolean(pkg && typeof pkg === 'object' && Object.hasOwn(pkg, MODULE));
  } catch {
    return false;
  }
}

/**
 * A config found in the current folder (not named by --config) is refused when another user could have
 * put it there: owned by someone else than this user or root, or writable by group or others, or in a
 * folder others may write to without the sticky bit. It names the coordinator, and a JS or TS one runs.
 */
async function refuseUnsafe(file: string, st: { uid: number; mode: number }): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  const folder = await stat(dirname(file)).catch(() => undefined);
  const why =
    st.uid !== uid && st.uid !== 0
      ? `it belongs to uid ${st.uid}, not to this user (uid ${uid})`
      : st.mode & 0o022
        ? `group or others can change it (mode ${(st.mode & 0o777).toString(8)})`
        : folder && folder.mode & 0o022 && !(folder.mode & 0o1000)
          ? `its folder can be changed by group or others (mode ${(folder.mode & 0o777).toString(8)})`
          : undefined;
  if (why) {
    throw new UsepodError(
      'USEPOD_CONFIG_UNSAFE',
      `config file ${file} found in the current folder was not read: ${why}; pass --config PATH to use it anyway`,
      { user: true },
    );
  }
}

/** True when `path` can be read; false when nothing is there; throws when it is there but not for us. */
function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') return false;
    const uid = process.getuid?.();
    throw new UsepodError(
      'USEPOD_CONFIG_UNREADABLE',
      `config file ${path} cannot be read by this user${uid === undefined ? '' : ` (uid ${uid})`}: permission denied on it or its folder`,
      { user: true },
    );
  }
}

/** The largest config file read: setup writes about 1 KB; past this it is not a config (a log, a disk image). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

export async function readConfigFile(path: string): Promise<unknown> {
  return (await readConfigSource(path)).value;
}

/** The config file's parsed value and the text it was parsed from. */
async function readConfigSource(path: string): Promise<{ value: unknown; text: string }> {
  if (!readable(path)) {
    throw new UsepodError('USEPOD_CONFIG_NOT_FOUND', `config file ${path} does not exist`, { user: true });
  }
  // Read as untrusted before any parser sees it: a FIFO would be waited on for good, /dev/zero read
  // until memory runs out.
  const read = await readLocalText(path, MAX_CONFIG_BYTES);
  if (read.kind === 'missing')
    throw new UsepodError('USEPOD_CONFIG_NOT_FOUND', `config file ${path} does not exist`, { user: true });
  if (read.kind === 'refused')
    throw new UsepodError('USEPOD_CONFIG_UNREADABLE', `config file ${path} ${read.why}`, { user: true });
  const { text } = read;
  try {
    // An empty file is an empty config, as cosmiconfig has it; agent.toml, the common case, needs only smol-toml.
    if (text.trim() === '') return { value: {}, text };
    if (isTomlPath(path)) return { value: (await loadToml(path, text)) ?? {}, text };
    return { value: await parseOther(path, text), text };
  } catch (err) {
    if (err instanceof UsepodError) throw err;
    throw new UsepodError('USEPOD_CONFIG_PARSE', parseError(path, text, err as Error), {
      user: true,
      cause: err,
    });
  }
}

/**
 * A locator of keys in the TOML file a config came from (`file:line:column`), for mistakes found after
 * loading (a kind's options, a plugin's section); undefined when the config came from no readable file.
 * The file is read again, so as untrusted as the first time: since it was loaded it may have been replaced
 * (by a FIFO, a huge file), and an embedder's config may name any `source`. Synchronous: a mistake is
 * thrown from where it is found.
 */
export function locatorFor(file: string | undefined): ((key: string) => string | undefined) | undefined {
  if (!file) return undefined;
  const read = readLocalTextSync(file, MAX_CONFIG_BYTES);
  if (read.kind !== 'text') return undefined;
  return (key) => at(file, locateTomlKey(read.text, key));
}

/** True when a path names a TOML file (setup writes TOML). */
export function isTomlPath(p: string): boolean {
  return extname(p) === '.toml';
}
