import type { Config } from '../config/schema.js';
import type { Holds } from './holds.js';
import { parseWindow, quietWindowAt } from './schedule.js';

/**
 * Quiet hours (issue 19) as a hold named `schedule`: placed on entering a `[schedule] pause` window,
 * released on leaving it. The owner resuming inside a window (`resume`) takes that window back: it is not
 * held again until it has ended. Recomputed from the clock at start, never persisted.
 */
export class QuietHours {
  readonly #holds: Holds;
  readonly #schedule: Config['schedule'];
  readonly #checkMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  /** The window the schedule holds for, and one the owner resumed in (left alone until it ends). */
  #holding: string | undefined;
  #overridden: string | undefined;

  constructor(o: { holds: Holds; schedule: Config['schedule']; checkMs: number; now: () => number }) {
    this.#holds = o.holds;
    this.#schedule = o.schedule;
    this.#checkMs = o.checkMs;
    this.#now = o.now;
  }

  start(): void {
    if (this.#schedule.pause.length === 0) return;
    this.#timer ??= setInterval(() => this.check(), this.#checkMs);
    this.#timer.unref();
    this.check();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The owner resumed: the window held now is theirs until it ends. */
  override(): void {
    if (this.#holding === undefined) return;
    this.#overridden = this.#holding;
    this.#holding = undefined;
    this.#holds.release('schedule');
  }

  check(): void {
    const windows = this.#schedule.pause.map(parseWindow);
    const w = quietWindowAt(windows, this.#schedule.timezone, this.#now());
    if (w) {
      if (this.#holding === w.text || this.#overridden === w.text) return;
      this.#holding = w.text;
      this.#holds.hold('schedule', { reason: `quiet hours (${w.text})` });
      return;
    }
    this.#overridden = undefined;
    if (this.#holding !== undefined) {
      this.#holding = undefined;
      this.#holds.release('schedule');
    }
  }
}
