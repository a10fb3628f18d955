import type { Hook } from '@oclif/core';
import { toConfiguredId } from '@oclif/core/util/ids';
import { closest, distance } from 'fastest-levenshtein';
import { EXIT, writeMistake } from '../base.js';

/**
 * A mistyped command: one line in the shape of every other usage mistake (base.ts),
 * exit 2 as 0.3.x (clap) did, and the nearest command when one is close.
 * Not @oclif/plugin-not-found: it suggests only by prompting on a TTY, so a script
 * or a service unit got no suggestion, and it exits 127.
 */
const hook: Hook.CommandNotFound = async function (opts) {
  const bin = opts.config.bin;
  const ids = opts.config.commands.filter((c) => !c.hidden).flatMap((c) => [c.id, ...c.aliases]);
  const suggestion = suggest(opts.id, ids);
  const typed = toConfiguredId(opts.id, opts.config);
  const meant = suggestion ? `did you mean '${bin} ${toConfiguredId(suggestion, opts.config)}'? ` : '';
  writeMistake(
    `'${typed}' is not a ${bin} command (USEPOD_USAGE)`,
    `${meant}'${bin} help' lists the commands`,
  );
  this.exit(EXIT.USAGE);
};

/** The closest id, if close enough to be what was meant: at most 2 edits, or a third of its length. */
export function suggest(id: string, ids: readonly string[]): string | undefined {
  if (ids.length === 0) return undefined;
  const best = closest(id, [...ids]);
  return distance(id, best) <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

export default hook;
