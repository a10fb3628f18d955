import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import createDebug from 'debug';
import { redactor } from './redact.js';

/**
 * Logging through `debug` namespaces: `usepod:<area>:<level>`. `--log-level`
 * enables the namespaces at and above a level; `DEBUG` is still honoured, so
 * `DEBUG=usepod:*` shows everything. One line per event, `key=value` fields
 * (or JSON lines), every line redacted.
 */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'text' | 'json';
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** A logger for a sub-area, e.g. `usepod:plugin:vllm`. */
  child(area: string): Logger;
}

export interface LogSink {
  write(line: string): void;
}

interface LogSettings {
  format: LogFormat;
  sink: LogSink;
}

const settings: LogSettings = {
  format: 'text',
  sink: defaultSink(),
};

/**
 * Append, create 0600, and never through a symlink: a link planted at the path must not redirect the log.
 * Never blocking: a FIFO at the path with no reader held open() (the main thread, on every line) for good.
 */
const LOG_FILE_FLAGS =
  fsConstants.O_WRONLY |
  fsConstants.O_APPEND |
  fsConstants.O_CREAT |
  (fsConstants.O_NOFOLLOW ?? 0) |
  (fsConstants.O_NONBLOCK ?? 0);

/** A declaration (hoisted): the default sink is made, and may use it, before this line runs. */
function toStderr(text: string): void {
  process.stderr.write(text);
}

/**
 * Lines appended to `file`; while it cannot be written (a full disk), to `fallback`, with one note when
 * that starts and one when the file takes lines again: a note after every line doubled the output of an
 * agent that logs a line per job, for as long as the disk stayed full.
 */
export function fileSink(file: string, fallback: (text: string) => void = toStderr): LogSink {
  let failing: string | undefined;
  return {
    write: (line) => {
      try {
        const fd = openSync(file, LOG_FILE_FLAGS, 0o600);
        try {
          writeSync(fd, `${line}\n`);
        } finally {
          closeSync(fd);
        }
      } catch (err) {
        const why = (err as Error).message;
        fallback(`${line}\n`);
        if (failing !== why) fallback(`(log file ${file} not written: ${why}; lines go here until it is)\n`);
        failing = why;
        return;
      }
      if (failing !== undefined) fallback(`(log file ${file} written again)\n`);
      failing = undefined;
    },
  };
}

function defaultSink(): LogSink {
  const file = process.env.USEPOD_AGENT_LOG_FILE;
  if (file) return fileSink(file);
  return { write: (line) => toStderr(`${line}\n`) };
}

/** `DEBUG` as the user set it; debug's own `enable()` overwrites process.env.DEBUG. */
const USER_DEBUG = process.env.DEBUG;

/** Whether the user asked for debug output (`DEBUG` set before this process touched it). */
export function debugRequested(): boolean {
  return Boolean(USER_DEBUG);
}

/** Enables the namespaces of a level, keeping whatever `DEBUG` asked for. */
export function configureLogging(opts: { level?: LogLevel; format?: LogFormat; sink?: LogSink } = {}): void {
  if (opts.format) settings.format = opts.format;
  if (opts.sink) settings.sink = opts.sink;
  const level = opts.level ?? 'info';
  const upto = LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1);
  const ns = upto.map((l) => `usepod:*:${l}`);
  createDebug.enable([...ns, ...(USER_DEBUG ? [USER_DEBUG] : [])].join(','));
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must not pass unescaped.
const PLAIN = /^[^\s"=\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+$/;

/**
 * What JSON.stringify leaves unescaped: DEL, the C1 controls, the Unicode line and paragraph separators,
 * and the bidi controls, which reorder the rest of the line where it is shown (an `auth_failed` reason
 * with U+202E read backwards in a journal viewer).
 */
const UNESCAPED = /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** JSON text of a string with DEL, the C1 controls, the Unicode separators and bidi controls escaped too. */
function quote(v: string): string {
  return escapeRest(JSON.stringify(v));
}

function escapeRest(json: string): string {
  return json.replace(UNESCAPED, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  // Quoted (and so escaped) unless plainly printable: a coordinator's or engine's string may carry ANSI escapes.
  if (typeof v === 'string') return PLAIN.test(v) ? v : quote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function formatLine(level: LogLevel, area: string, msg: string, fields: LogFields = {}): string {
  const time = new Date().toISOString();
  if (settings.format === 'json') {
    return escapeRest(JSON.stringify({ time, level, area, msg, ...redactor.redactFields(fields) }));
  }
  const kv = Object.entries(redactor.redactFields(fields))
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(' ');
  return `${time} ${level.toUpperCase().padEnd(5)} ${area} ${msg}${kv ? ` ${kv}` : ''}`;
}

/** Loggers made here, so a sibling area can be made for them (an integrator's logger only has `child`). */
const ours = new WeakSet<Logger>();

/**
 * A top-level area beside `log`'s when it is one of ours (`job`, not `agent:job`: the per-job line has
 * 120 columns to fit), else `log.child(area)`.
 */
export function topLevelLogger(log: Logger, area: string): Logger {
  return ours.has(log) ? createLogger(area) : log.child(area);
}

export function createLogger(area: string): Logger {
  const gates = Object.fromEntries(LOG_LEVELS.map((l) => [l, createDebug(`usepod:${area}:${l}`)])) as Record<
    LogLevel,
    createDebug.Debugger
  >;
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (!gates[level].enabled) return;
    settings.sink.write(redactor.redact(formatLine(level, area, msg, fields)));
  };
  const logger: Logger = {
    error: emit('error'),
    warn: emit('warn'),
    info: emit('info'),
    debug: emit('debug'),
    child: (sub) => createLogger(`${area}:${sub}`),
  };
  ours.add(logger);
  return logger;
}

/** A logger that drops everything, for embedding without output. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child: () => silentLogger,
};
