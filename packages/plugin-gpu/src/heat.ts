import type { Gpu } from './read.js';
import type { YieldSection } from './section.js';

/**
 * The heat and power guard (issue 31): a GPU over `max_temp_c` or `max_power_w` at two polls in a row
 * holds the agent (`heat`); the hold lifts once every GPU has stayed `cooldown_s` under the limits (the
 * temperature `resume_below_c` under). A figure the tool does not know neither counts nor resets. The
 * agent never sets a power limit itself: it reports `power.limit` so the owner sees it.
 */
export const POLLS_OVER = 2;

export type GuardChange = { hold: string } | { release: string } | undefined;

const key = (g: Gpu) => `${g.tool}:${g.index}`;

export class HeatGuard {
  readonly #cfg: YieldSection;
  /** Polls in a row each GPU was over a limit. */
  readonly #over = new Map<string, number>();
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
  }

  update(gpus: readonly Gpu[], now: number): GuardChange {
    let worst: string | undefined;
    for (const g of gpus) {
      if (g.tempC === undefined && g.powerW === undefined) continue;
      const over = this.#overBy(g, 0);
      const n = over ? (this.#over.get(key(g)) ?? 0) + 1 : 0;
      this.#over.set(key(g), n);
      if (over && n >= POLLS_OVER && worst === undefined) worst = `GPU ${g.index} (${g.tool}) at ${over}`;
    }
    if (this.#reason === undefined) {
      if (worst === undefined) return undefined;
      this.#reason = `too hot: ${worst}`;
      this.#coolSince = undefined;
      return { hold: this.#reason };
    }
    // Held: cool enough means under the temperature limit less the hysteresis on every GPU.
    const warm = gpus.some((g) => this.#overBy(g, this.#cfg.resume_below_c) !== undefined);
    if (warm) {
      this.#coolSince = undefined;
      return undefined;
    }
    this.#coolSince ??= now;
    if (now - this.#coolSince < this.#cfg.cooldown_s * 1000) return undefined;
    const was = this.#reason;
    this.#reason = undefined;
    this.#coolSince = undefined;
    this.#over.clear();
    return { release: was };
  }
}
