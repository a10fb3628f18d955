/**
 * The one table of agent error codes. A code is never reused for another meaning;
 * docs/errors.md mirrors this table. `hint` says what the operator should do.
 */
export const ERROR_CODES = {
  USEPOD_CONFIG_NOT_FOUND: 'No config file was found. Run `usepod-agent setup`, or pass --config PATH.',
  USEPOD_CONFIG_PARSE: 'The config file is not valid TOML/JSON/YAML/JS. Fix the syntax at the place named.',
  USEPOD_CONFIG_INVALID: 'A config value is wrong. Fix the key named in the message.',
  USEPOD_CONFIG_UNREADABLE:
    'The config file is there but cannot be read: this user has no read access to it or its folder (chown, chmod), or it is no regular file of at most 1 MB. Fix it, or pass --config PATH.',
  USEPOD_CONFIG_UNSAFE:
    'A config file in the current folder, or the plugin folder, could have been put there by another user, so it was not read. Move the config to your own folder or pass --config PATH; make the plugin folder yours and writable by you alone.',
  USEPOD_CONFIG_WRITE:
    'setup could not write the config file (a full disk, a folder it cannot write). Free space or pass --config another path, then run `usepod-agent setup` again.',
  USEPOD_IDENTITY_INVALID:
    'The identity file is damaged or not a Use Pod agent key. Restore it from a backup.',
  USEPOD_IDENTITY_MISMATCH:
    'The identity file public key does not match its secret. Restore the file from a backup.',
  USEPOD_IDENTITY_IO:
    'The identity file (or its lock beside it) could not be read or written. Check the path and its permissions.',
  USEPOD_IDENTITY_IN_USE:
    'Another agent runs with this identity. One key serves from one agent at a time: stop the other one first.',
  USEPOD_PLUGIN_NOT_FOUND:
    'No plugin provides this backend kind. Install it with `usepod-agent plugins install <package>`.',
  USEPOD_PLUGIN_INVALID: 'The package is not a usepod-agent plugin (it must export a plugin by default).',
  USEPOD_PLUGIN_API_MISMATCH:
    'The plugin was built for another plugin API version. Upgrade the plugin or the agent.',
  USEPOD_PLUGIN_LOAD_FAILED:
    "A plugin threw, or did not finish, while the agent loaded it (its import, apply() or a backend's create()); the message names it. Upgrade it, or remove it (`usepod-agent plugins uninstall <name>`).",
  USEPOD_PLUGIN_HOOK_FAILED:
    'A plugin hook threw. The message names the plugin and the hook; report it to its author.',
  USEPOD_BACKEND_UNREACHABLE:
    'The engine could not be reached. Check that it runs and that its url is right.',
  USEPOD_BACKEND_TIMEOUT: 'The engine did not finish in time.',
  USEPOD_BACKEND_AUTH: 'The engine refused the API key. Check the variable named by api_key_env.',
  USEPOD_BACKEND_MODEL_NOT_FOUND: 'The engine does not serve this model.',
  USEPOD_BACKEND_HTTP: 'The engine answered with an error status.',
  USEPOD_BACKEND_NO_ROUTE:
    'The engine has no such route (an older build): Anthropic jobs are translated to chat completions instead.',
  USEPOD_BACKEND_STREAM: 'The engine stream failed or ended early.',
  USEPOD_BACKEND_BUSY:
    'The engine is busy right now (HTTP 429, a full queue); the coordinator routes the job elsewhere. Raise the engine queue or lower limits.max_concurrent if it lasts.',
  USEPOD_COORDINATOR_AUTH_FAILED: 'The coordinator refused this agent. The reason is in the message.',
  USEPOD_PROTOCOL: 'The coordinator sent something the protocol does not allow.',
  USEPOD_AGENT_STATE: 'The agent was used in a state that does not allow this call.',
  USEPOD_AGENT_NOT_RUNNING:
    'No agent answers at the status address. Start it (`usepod-agent run`, or `usepod-agent service start`), or check observability.prometheus_addr.',
  USEPOD_PAIRING_FAILED: 'Pairing with the coordinator failed. Check --coordinator and your network.',
  USEPOD_PAIRING_EXPIRED: 'The pairing code expired before it was entered. Run `usepod-agent setup` again.',
  USEPOD_LEDGER:
    'The ledger (SQLite) could not be opened or is from a newer agent. Check [ledger] path and its folder, or upgrade the agent.',
  USEPOD_USAGE: 'A command-line flag or argument is wrong. See --help.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface UsepodErrorOptions {
  cause?: unknown;
  /** Plugin and hook that raised the error, when it came from a tap. */
  plugin?: string;
  hook?: string;
  /** True for mistakes the operator can fix: the CLI prints one line, no stack. */
  user?: boolean;
  /** The engine's HTTP status, for an error status it answered (tells its 5xx from a client's 4xx). */
  status?: number;
}

const BRAND = Symbol.for('usepod-agent.error');

export class UsepodError extends Error {
  /** Survives two copies of core in one process, where `instanceof` does not. */
  readonly [BRAND] = true;
  readonly code: ErrorCode;
  readonly plugin: string | undefined;
  readonly hook: string | undefined;
  readonly user: boolean;
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options: UsepodErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UsepodError';
    this.code = code;
    this.plugin = options.plugin;
    this.hook = options.hook;
    this.user = options.user ?? false;
    this.status = options.status;
  }

  get hint(): string {
    return ERROR_CODES[this.code];
  }
}

export function isUsepodError(err: unknown, code?: ErrorCode): err is UsepodError {
  const branded = typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
  return branded && (code === undefined || (err as UsepodError).code === code);
}

/** Wire error codes of PROTOCOL.md 5.4, sent in `job_error.error_code`. */
export const JOB_ERROR_CODES = [
  'out_of_capacity',
  'model_not_loaded',
  'backend_unreachable',
  'backend_timeout',
  'auth_rejected_by_backend',
  'internal',
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

const JOB_CODE_BY_ERROR: Partial<Record<ErrorCode, JobErrorCode>> = {
  USEPOD_BACKEND_UNREACHABLE: 'backend_unreachable',
  USEPOD_BACKEND_TIMEOUT: 'backend_timeout',
  USEPOD_BACKEND_AUTH: 'auth_rejected_by_backend',
  USEPOD_BACKEND_MODEL_NOT_FOUND: 'model_not_loaded',
  USEPOD_BACKEND_BUSY: 'out_of_capacity',
};

/** The wire code a failure is reported with; anything unknown is `internal`. */
export function jobErrorCodeOf(err: unknown): JobErrorCode {
  if (isUsepodError(err)) return JOB_CODE_BY_ERROR[err.code] ?? 'internal';
  return 'internal';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
