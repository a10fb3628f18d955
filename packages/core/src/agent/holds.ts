import type { Hold, HoldOptions } from '../plugins/plugin.js';
import { atTime, type LongTimer } from '../timers.js';
import { engineText } from '../untrusted.js';

/**
 * What keeps the agent paused (issue 27): named holds. The owner's pause, quiet hours, GPU yielding and
 * any plugin's reason are each a hold; the agent is paused while at least one exists and resumes when the
 * last is released. A hold with `until` releases itself. Holding again under a name replaces its reason
 * and its end. Who persists a hold is the holder's business (only the owner's outlives a restart).
 * A hold scoped to `backends` (issue 31: a hot GPU's engines) does not pause the agent: it withdraws the
 * models of those backends only (routing and capabilities skip them; jobs in flight finish).
 */

/** The longest hold with an end: ~100 years; anything later is refused as a mistake, not clamped. */
export const MAX_HOLD_MS = 100 * 365.25 * 86_400_000;
/** The most backends one hold may name (a config has a few). */
export const MAX_HOLD_BACKENDS = 64;

interface Held {
  reason: string;
  until: Date | undefined;
  /** The backends (labels) it withdraws; undefined: the whole agent. */
  backends: string[] | undefined;
  since: Date;
  timer: LongTimer | undefined;
}

export interface HoldsOptions {
  /** A hold placed or replaced (`placed`), or released; `paused` is whether a hold on the whole agent remains. */
  onChange(change: { by: string; placed: Hold | undefined; paused: boolean }): void;
}

export class Holds {
  readonly #held = new Map<string, Held>();
  readonly #o: HoldsOptions;

  constructor(opts: HoldsOptions) {
    this.#o = opts;
  }

  /** Whether a hold on the whole agent exists (scoped holds withdraw their backends only). */
  get paused(): boolean {
    for (const h of this.#held.values()) if (h.backends === undefined) return true;
    return false;
  }

  /** Why `backend` (its label) is held by a scoped hold, or undefined. */
  backendHeld(label: string): string | undefined {
    for (const h of this.#held.values()) if (h.backends?.includes(label)) return h.reason;
    return undefined;
  }

  has(name: string): boolean {
    return this.#held.has(name);
  }

  /** Every hold, the owner's first, then the oldest. */
  list(): Hold[] {
    return [...this.#held.entries()]
      .sort(([a, x], [b, y]) =>
        a === 'owner' ? -1 : b === 'owner' ? 1 : x.since.getTime() - y.since.getTime(),
      )
      .map(([by, h]) => view(by, h));
  }

  /** The hold on the whole agent that explains the pause best (the owner's, else the oldest), or undefined. */
  first(): Hold | undefined {
    return this.list().find((h) => h.backends === undefined);
  }

  hold(name: string, opts: HoldOptions): void {
    const until = opts.until;
    if (until !== undefined && !Number.isFinite(until.getTime())) throw new RangeError('until is not a date');
    const backends = scopeOf(opts.backends);
    // A reason may quote a process name another local user chose: folded before status, logs, /readyz.
    const reason = engineText(opts.reason, 200).trim() || 'paused';
    const was = this.#held.get(name);
    // Held again as it is (a rule polled anew): nothing changes, nothing is told.
    if (
      was &&
      was.reason === reason &&
      was.until?.getTime() === until?.getTime() &&
      was.backends?.join('\n') === backends?.join('\n')
    )
      return;
    was?.timer?.cancel();
    const since = this.#held.get(name)?.since ?? new Date();
    const h: Held = { reason, until, backends, since, timer: undefined };
    // At `until` by the wall clock too: a machine that slept through it releases the hold when it wakes.
    if (until !== undefined) h.timer = atTime(() => this.release(name), until.getTime());
    this.#held.set(name, h);
    this.#o.onChange({ by: name, placed: view(name, h), paused: this.paused });
  }

  release(name: string): void {
    const h = this.#held.get(name);
    if (!h) return;
    h.timer?.cancel();
    this.#held.delete(name);
    this.#o.onChange({ by: name, placed: undefined, paused: this.paused });
  }

  /** Cancels every timer (the agent stopped); the holds themselves stay as they were. */
  stop(): void {
    for (const h of this.#held.values()) h.timer?.cancel();
  }
}

/** A scope as given by a plugin: labels, each folded, at most MAX_HOLD_BACKENDS; an empty one is a bug. */
function scopeOf(backends: readonly string[] | undefined): string[] | undefined {
  if (backends === undefined) return undefined;
  if (!Array.isArray(backends) || backends.length === 0 || backends.length > MAX_HOLD_BACKENDS)
    throw new RangeError(`backends must name 1 to ${MAX_HOLD_BACKENDS} backends`);
  return [...new Set(backends.map((b) => engineText(String(b), 200)))].sort();
}

function view(by: string, h: Held): Hold {
  return {
    by,
    reason: h.reason,
    until: h.until?.toISOString(),
    since: h.since.toISOString(),
    ...(h.backends ? { backends: [...h.backends] } : {}),
  };
}
