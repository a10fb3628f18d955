import type { Interfaces } from '@oclif/core';
import { Command } from '@oclif/core/command';
import * as Flags from '@oclif/core/flags';
import type { LoadedConfig, LogFormat, LogLevel } from '@usepod-agent/core';

/**
 * Core, loaded on first need: `--help` and `version` never load it (they stay under ~0.2 s of CPU; all of
 * core is ~0.2 s more, decision 0008). Until it is loaded nothing was told to the redactor, so there is
 * nothing to redact yet.
 */
let loaded:
  | { core: typeof import('@usepod-agent/core'); cli: typeof import('@usepod-agent/core/cli') }
  | undefined;
async function core() {
  loaded ??= { core: await import('@usepod-agent/core'), cli: await import('@usepod-agent/core/cli') };
  return loaded;
}
const redact = (text: string) => loaded?.cli.redactor.redact(text) ?? text;

/**
 * Every control and bidi character but the line break, folded to a space: a mistake may quote what a
 * plugin threw or a file said, and a terminal must never get its escapes. Bounded too (a plugin's error
 * of a megabyte); a config's several mistakes stay on their lines.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const UNPRINTABLE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+/g;
const MAX_MISTAKE = 16 * 1024;
const printable = (text: string) => {
  const folded = text.replace(UNPRINTABLE, ' ');
  return folded.length > MAX_MISTAKE ? `${folded.slice(0, MAX_MISTAKE)}…` : folded;
};

/** Exit codes, written down in the README. */
export const EXIT = {
  OK: 0,
  /** Something failed at run time (network, engine, coordinator). */
  FAILURE: 1,
  /** A user mistake: flags, config, files. */
  USAGE: 2,
  /** `service status`: the service is not installed. */
  NOT_INSTALLED: 3,
} as const;

/** What went wrong in one line (redacted: it may quote an engine, a path or a URL), and what to do on the next. */
export function writeMistake(line: string, hint?: string): void {
  process.stderr.write(`usepod-agent: ${printable(redact(line))}\n`);
  if (hint) process.stderr.write(`  hint: ${printable(hint)}\n`);
}

/**
 * A usage mistake found by a command that does not extend BaseCommand (oclif's
 * plugin commands): the same two lines BaseCommand.catch prints, exit 2.
 */
export function failUsage(cmd: { exit(code?: number): never }, line: string, hint: string): never {
  writeMistake(`${line} (USEPOD_USAGE)`, hint);
  return cmd.exit(EXIT.USAGE);
}

export const configFlag = Flags.string({
  char: 'c',
  summary:
    'Config file (agent.toml, .usepodrc*, usepod.config.*, package.json). Default: the platform config dir, then ./agent.toml.',
  helpValue: 'PATH',
});
export const allowInsecureFlag = Flags.boolean({
  summary: 'Accept a ws:// (unencrypted) coordinator URL, for a local coordinator.',
  default: false,
});
/** 0.3.x took any `tracing` filter here (`trace`, `usepod_agent=debug`): read as the nearest level. */
export const logLevelFlag = Flags.custom<LogLevel>({
  summary:
    'Log level: error, warn, info or debug (0.3.x filters such as trace are read as the nearest). Default: observability.log_level, else info.',
  helpValue: 'LEVEL',
  parse: async (v) => {
    const { level, note } = (await core()).cli.readLogLevel(v);
    if (note) process.stderr.write(`usepod-agent: warning: --${note}\n`);
    return level;
  },
})();
export const logFormatFlag = Flags.option({
  options: ['text', 'json'] as const,
  summary: 'Log lines as key=value text or JSON lines.',
})();
export const jsonFlag = Flags.boolean({ summary: 'Print machine-readable JSON.', default: false });

/**
 * Shared behaviour of every command: a user mistake prints one line naming
 * what to fix and exits 2, with no stack trace; `DEBUG=usepod:*` shows detail.
 */
export abstract class BaseCommand extends Command {
  /**
   * The global flags of 0.3.x (PROTOCOL.md 8a): every command takes them, before or after its name
   * (bin/run.js moves those given before the command behind it; see argv.ts).
   */
  static override baseFlags = {
    config: configFlag,
    'log-level': logLevelFlag,
    'allow-insecure': allowInsecureFlag,
  };

  protected async setupLogging(level: LogLevel | undefined, format?: LogFormat): Promise<void> {
    (await core()).core.configureLogging({ level: level ?? 'info', ...(format ? { format } : {}) });
  }

  protected async readConfig(flags: {
    config?: string | undefined;
    'allow-insecure'?: boolean;
  }): Promise<LoadedConfig> {
    return (await core()).core.loadConfig({
      ...(flags.config ? { path: flags.config } : {}),
      allowInsecure: flags['allow-insecure'] ?? false,
    });
  }

  /** Writes a line to stdout. */
  protected out(line = ''): void {
    process.stdout.write(`${line}\n`);
  }

  protected printJson(value: unknown): void {
    const fields = loaded ? loaded.cli.redactor.redactFields(value) : value;
    process.stdout.write(`${JSON.stringify(fields, null, 2)}\n`);
  }

  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    if ((err as { code?: string }).code === 'EEXIT') throw err;
    const { core: c, cli } = await core();
    const isUsepodError = c.isUsepodError;
    // DEBUG as the user set it: enabling a log level rewrites process.env.DEBUG (issue 17).
    const debug = cli.debugRequested();
    const oclifExit = (err as { oclif?: { exit?: number } }).oclif?.exit;
    let line: string;
    let hint: string | undefined;
    let code: number = EXIT.FAILURE;
    if (isUsepodError(err)) {
      // The message says what went wrong and where; the code finds it in docs/errors.md; the hint, what to do.
      line = `${err.message} (${err.code})`;
      hint = err.hint;
      code = err.user ? EXIT.USAGE : EXIT.FAILURE;
    } else if (oclifExit === 2) {
      // Flag and argument parse errors from oclif: keep the first line.
      line = `${String(err.message).split('\n')[0]} (see --help)`;
      code = EXIT.USAGE;
    } else {
      line = err.message;
    }
    writeMistake(line, hint);
    if (debug && err.stack) process.stderr.write(`${printable(redact(err.stack))}\n`);
    else if (code === EXIT.FAILURE && !isUsepodError(err)) {
      process.stderr.write('usepod-agent: run with DEBUG=usepod:* for details\n');
    }
    return this.exit(code);
  }
}
