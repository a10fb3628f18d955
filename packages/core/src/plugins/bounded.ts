import { isUsepodError, UsepodError } from '../errors.js';
import { TIMED_OUT, within } from '../timers.js';
import { engineText } from '../untrusted.js';

/**
 * A plugin is third-party code run while the agent or a command starts: its import and its `apply` are
 * bounded here, and what it throws is said in one line naming it. A module that never finished (a
 * top-level await on something that never comes) held `run` for good, or ended the process with exit 13
 * and no word; one that threw printed its own text raw: terminal escapes, a megabyte, many lines.
 */

/** How long a plugin may take to import, and then to apply. Generous: both should take milliseconds. */
export const PLUGIN_LOAD_MS = 30_000;

/** The most of a plugin's own text (what it threw, its name) put in a line for the operator. */
export const MAX_PLUGIN_TEXT = 300;

/** A plugin's own text folded for a line: no control or bidi character, at most MAX_PLUGIN_TEXT. */
export function pluginText(text: string): string {
  return engineText(text, MAX_PLUGIN_TEXT);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

/**
 * A name a plugin gives (its own, a kind, a section): a string of 1 to `max` characters with no control or
 * bidi character, since listings, lines and logs show it as it is.
 */
export function isPluginName(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= max && !CONTROL.test(v);
}

function thrown(err: unknown): string {
  try {
    return pluginText(err instanceof Error ? err.message : String(err));
  } catch {
    // A thrown value whose message or toString throws in turn.
    return 'an unprintable value';
  }
}

/** What a plugin threw in `step` (`its import`, `apply()`), as one line naming it; core's own coded errors pass. */
export function threwIn(err: unknown, plugin: string, step: string): UsepodError {
  if (isUsepodError(err)) return err;
  const name = pluginText(plugin);
  return new UsepodError('USEPOD_PLUGIN_LOAD_FAILED', `plugin "${name}" threw in ${step}: ${thrown(err)}`, {
    user: true,
    plugin: name,
    cause: err,
  });
}

/**
 * `work`'s value, or USEPOD_PLUGIN_LOAD_FAILED naming the plugin and the step (`its import`, `apply()`) when
 * it throws or is not done within `ms`. A coded error of core's own (a config mistake found by the
 * plugin's `ctx.section`) passes as it is. The timer holds the process while it waits: without it, a
 * module whose top-level await never settles let Node end the process silently (exit 13).
 */
export async function bounded<T>(
  work: () => T | Promise<T>,
  plugin: string,
  step: string,
  ms = PLUGIN_LOAD_MS,
): Promise<T> {
  let done: T | typeof TIMED_OUT;
  try {
    done = await within(work, ms);
  } catch (err) {
    throw threwIn(err, plugin, step);
  }
  if (done !== TIMED_OUT) return done;
  const name = pluginText(plugin);
  throw new UsepodError(
    'USEPOD_PLUGIN_LOAD_FAILED',
    `plugin "${name}" did not finish ${step} within ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`,
    { user: true, plugin: name },
  );
}
