import type { Hold } from '../plugins/plugin.js';
import { type LongTimer, longTimeout } from '../timers.js';
import { engineText } from '../untrusted.js';

/**
 * What keeps the agent paused (issue 27): named holds. The owner's pause, quiet hours, GPU yielding and
 * any plugin's reason are each a hold; the agent is paused while at least one exists and resumes when the
 * last is released. A hold with `until` releases itself. Holding again under a name replaces its reason
 * and its end. Who persists a hold is the holder's business (only the owner's outlives a restart).
 */

/** The longest hold with an end: ~100 years; anything later is refused as a mistake, not clamped. */
export const MAX_HOLD_MS = 100 * 365.25 * 86_400_000;

interface Held {
  reason: string;
  until: Date | undefined;
  since: Date;
  timer: LongTimer | undefined;
}

export interface HoldsOptions {
  /** A hold placed or replaced (`placed`), or released; `paused` is whether any hold remains. */
  onChange(change: { by: string; placed: Hold | undefined; paused: boolean }): void;
}

export class Holds {
  readonly #held = new Map<string, Held>();
  readonly #o: HoldsOptions;

  constructor(opts: HoldsOptions) {
    this.#o = opts;
  }

  get paused(): boolean {
    return this.#held.size > 0;
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

  /** The hold that explains the pause best (the owner's, else the oldest), or undefined. */
  first(): Hold | undefined {
    return this.list()[0];
  }

  hold(name: string, opts: { reason: string; until?: Date | undefined }): void {
    const until = opts.until;
    if (until !== undefined && !Number.isFinite(until.getTime())) throw new RangeError('until is not a date');
    // A reason may quote a process name another local user chose: folded before status, logs, /readyz.
    const reason = engineText(opts.reason, 200).trim() || 'paused';
    const was = this.#held.get(name);
    // Held again as it is (a rule polled anew): nothing changes, nothing is told.
    if (was && was.reason === reason && was.until?.getTime() === until?.getTime()) return;
    was?.timer?.cancel();
    const h: Held = { reason, until, since: this.#held.get(name)?.since ?? new Date(), timer: undefined };
    if (until !== undefined) h.timer = longTimeout(() => this.release(name), until.getTime() - Date.now());
    this.#held.set(name, h);
    this.#o.onChange({ by: name, placed: view(name, h), paused: true });
  }

  release(name: string): void {
    const h = this.#held.get(name);
    if (!h) return;
    h.timer?.cancel();
    this.#held.delete(name);
    this.#o.onChange({ by: name, placed: undefined, paused: this.#held.size > 0 });
  }

  /** Cancels every timer (the agent stopped); the holds themselves stay as they were. */
  stop(): void {
    for (const h of this.#held.values()) h.timer?.cancel();
  }
}

function view(by: string, h: Held): Hold {
  return { by, reason: h.reason, until: h.until?.toISOString(), since: h.since.toISOString() };
}
