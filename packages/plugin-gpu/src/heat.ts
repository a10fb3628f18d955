import type { Gpu } from './read.js';
import type { YieldSection } from './section.js';

/**
 * The heat and power guard (issue 31): a GPU over `max_temp_c` or `max_power_w` at two polls in a row
 * holds (`heat`) the engines on it (the watch finds which, `scope.ts`); another GPU that gets hot while
 * held widens the hold. The hold lifts once every GPU has stayed `cooldown_s` under the limits (the
 * temperature `resume_below_c` under). A figure the tool does not know neither counts nor resets. The
 * agent never sets a power limit itself: it reports `power.limit` so the owner sees it.
 */
export const POLLS_OVER = 2;

/** `hold`: the reason and every GPU held (the first hold, or a wider one); `release`: the reason it was. */
export type GuardChange = { hold: string; gpus: Gpu[] } | { release: string } | undefined;

const key = (g: Gpu) => `${g.tool}:${g.index}`;

export class HeatGuard {
  readonly #cfg: YieldSection;
  /** Polls in a row each GPU was over a limit. */
  readonly #over = new Map<string, number>();
  /** The GPUs held, and why each. */
  readonly #hot = new Map<string, { gpu: Gpu; why: string }>();
  #reason: string | undefined;
  #coolSince: number | undefined;

  constructor(cfg: YieldSection) {
    this.#cfg = cfg;
  }

  /** Why the guard holds the agent now, or undefined. */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** Since when every GPU has been cool enough while held (ms), or undefined. */
  get coolSince(): number | undefined {
    return this.#coolSince;
  }

  /** What is over a limit on this GPU now, or undefined (unknown figures are not over). */
  #overBy(g: Gpu, margin: number): string | undefined {
    const { max_temp_c: maxTemp, max_power_w: maxPower } = this.#cfg;
    if (maxTemp !== undefined && g.tempC !== undefined && g.tempC > maxTemp - margin) {
      return `${g.tempC} °C, over max_temp_c ${maxTemp}`;
    }
    if (maxPower !== undefined && g.powerW !== undefined && g.powerW > maxPower) {
      return `${g.powerW} W, over max_power_w ${maxPower}`;
    }
    return undefined;
  }

  /** Forgets every reading and the hold (the GPUs cannot be read). */
  reset(): void {
    this.#reason = undefined;
    this.#coolSince = undefined;
    this.#over.clear();
    this.#hot.clear();
  }

  /** A poll's readings; `now` in ms of a clock that never steps back (the watch's is monotonic). */
  update(gpus: readonly Gpu[], now: number): GuardChange {
    let wider = false;
    for (const g of gpus) {
      if (g.tempC === undefined && g.powerW === undefined) continue;
      const over = this.#overBy(g, 0);
      const n = over ? (this.#over.get(key(g)) ?? 0) + 1 : 0;
      this.#over.set(key(g), n);
      if (over && n >= POLLS_OVER && !this.#hot.has(key(g))) {
        this.#hot.set(key(g), { gpu: g, why: `GPU ${g.index} (${g.tool}) at ${over}` });
        wider = true;
      }
    }
    if (wider) {
      this.#reason = `too hot: ${[...this.#hot.values()].map((h) => h.why).join('; ')}`;
      this.#coolSince = undefined;
      return { hold: this.#reason, gpus: [...this.#hot.values()].map((h) => h.gpu) };
    }
    if (this.#reason === undefined) return undefined;
    // Held: cool enough means under the temperature limit less the hysteresis on every GPU.
    const warm = gpus.some((g) => this.#overBy(g, this.#cfg.resume_below_c) !== undefined);
    if (warm) {
      this.#coolSince = undefined;
      return undefined;
    }
    this.#coolSince ??= now;
    if (now - this.#coolSince < this.#cfg.cooldown_s * 1000) return undefined;
    const was = this.#reason;
    this.reset();
    return { release: was };
  }
}
