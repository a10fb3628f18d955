import { LOG_LEVELS, type LogLevel } from '../observability/log.js';

/**
 * `observability.log_level` and `--log-level` as 0.3.x accepted them (PROTOCOL.md 8): any string, read
 * as a `tracing` filter (`trace`, `warn`, `usepod_agent=debug,hyper=info`). Mapped to the nearest of our
 * four levels; `note` says what was read when the value was not one of them.
 */
export interface ReadLevel {
  level: LogLevel;
  note?: string;
}

const SYNONYMS: Record<string, LogLevel> = {
  trace: 'debug',
  warning: 'warn',
  off: 'error',
  none: 'error',
  critical: 'error',
  fatal: 'error',
};

function one(word: string): LogLevel | undefined {
  const w = word.trim().toLowerCase();
  return (LOG_LEVELS as readonly string[]).includes(w)
    ? (w as LogLevel)
    : Object.hasOwn(SYNONYMS, w)
      ? SYNONYMS[w]
      : undefined;
}

export function readLogLevel(value: string): ReadLevel {
  const exact = (LOG_LEVELS as readonly string[]).includes(value) ? (value as LogLevel) : undefined;
  if (exact) return { level: exact };
  let ours: LogLevel | undefined;
  let bare: LogLevel | undefined;
  let most: LogLevel | undefined;
  for (const directive of value.split(',')) {
    const eq = directive.indexOf('=');
    const target = eq === -1 ? '' : directive.slice(0, eq).trim();
    const level = one(eq === -1 ? directive : directive.slice(eq + 1));
    if (!level) continue;
    if (target === '') bare = level;
    else if (target === 'usepod_agent' || target.startsWith('usepod')) ours = level;
    if (!most || LOG_LEVELS.indexOf(level) > LOG_LEVELS.indexOf(most)) most = level;
  }
  const level = ours ?? bare ?? most;
  const shown = JSON.stringify(value.slice(0, 80));
  if (!level)
    return { level: 'info', note: `log level ${shown} is not a level this agent knows; using "info"` };
  return { level, note: `log level ${shown} (a 0.3.x filter) read as "${level}"` };
}
