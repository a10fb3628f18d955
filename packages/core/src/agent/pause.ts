import type { Config } from '../config/schema.js';
import type { PausedBy } from '../plugins/hooks.js';
import { parseWindow, quietWindowAt } from './schedule.js';

/**
 * Whether the agent is paused, why, until when, and by whom (issue 19): the owner's own pause, a timed
 * one that ends by itself, and quiet hours, which pause on entering a window and resume on leaving it
 * but never lift a pause of the owner's, nor pause again a window the owner resumed in. What a pause
 * does to the agent (capabilities, the executor, metrics, events) is the agent's `onChange`.
 */

export interface PauseState {
  reason: string;
  until: Date | undefined;
  by: PausedBy;
}

export interface PauseOptions {
  schedule: Config['schedule'];
  /** How often quiet hours are checked. */
  checkMs: number;
  /** The wall clock quiet hours are read from. */
  now: () => number;
  /** Paused (with the state) or resumed (undefined, with who resumed). */
  onChange(state: PauseState | undefined, by: PausedBy): void;
}

export class PauseControl {
  readonly #o: PauseOptions;
  #state: (PauseState & { timer: NodeJS.Timeout | undefined }) | undefined;
  #scheduleTimer: NodeJS.Timeout | undefined;
  /** The quiet-hours window the agent paused for, and one the owner resumed during (left alone until it ends). */
  #scheduledPause: string | undefined;
  #scheduleOverridden: string | undefined;

  constructor(opts: PauseOptions) {
    this.#o = opts;
  }

  get state(): PauseState | undefined {
    return this.#state && { reason: this.#state.reason, until: this.#state.until, by: this.#state.by };
  }

  /** Starts watching quiet hours (none configured: nothing to watch). */
  start(): void {
    this.#checkSchedule();
  }

  stop(): void {
    clearInterval(this.#scheduleTimer);
    this.#scheduleTimer = undefined;
  }

  #checkSchedule(): void {
    const windows = this.#o.schedule.pause.map(parseWindow);
    if (windows.length === 0) return;
    if (!this.#scheduleTimer) {
      this.#scheduleTimer = setInterval(() => this.#checkSchedule(), this.#o.checkMs);
      this.#scheduleTimer.unref();
    }
    const w = quietWindowAt(windows, this.#o.schedule.timezone, this.#o.now());
    if (w && !this.#state && this.#scheduleOverridden !== w.text) {
      this.pause({ reason: `quiet hours (${w.text})`, by: 'schedule' });
      this.#scheduledPause = w.text;
    } else if (!w) {
      this.#scheduleOverridden = undefined;
      if (
        this.#scheduledPause !== undefined &&
        this.#state?.reason === `quiet hours (${this.#scheduledPause})`
      ) {
        this.#scheduledPause = undefined;
        this.resume({ by: 'schedule' });
      }
      this.#scheduledPause = undefined;
    }
  }

  /** Pausing again replaces the reason and the time; `until` resumes by itself. */
  pause(opts: { reason?: string; until?: Date; by?: PausedBy } = {}): void {
    clearTimeout(this.#state?.timer);
    const by = opts.by ?? 'owner';
    const reason = opts.reason?.trim() || 'paused';
    const ms = opts.until ? opts.until.getTime() - Date.now() : undefined;
    // setTimeout holds at most 2^31-1 ms (24.8 days); a longer pause ends early rather than at once.
    const timer =
      ms !== undefined
        ? setTimeout(() => this.resume({ by }), Math.max(0, Math.min(ms, 2 ** 31 - 1)))
        : undefined;
    timer?.unref();
    this.#state = { reason, until: opts.until, by, timer };
    this.#o.onChange(this.state, by);
  }

  resume(opts: { by?: PausedBy } = {}): void {
    if (!this.#state) return;
    // The owner resuming inside quiet hours: that window is theirs now.
    if (this.#scheduledPause !== undefined) {
      this.#scheduleOverridden = this.#scheduledPause;
      this.#scheduledPause = undefined;
    }
    clearTimeout(this.#state.timer);
    this.#state = undefined;
    this.#o.onChange(undefined, opts.by ?? 'owner');
  }
}
