import type { Gpu } from './read.js';

/**
 * Energy (issue 31): each GPU's power integrated over time by trapezoids between two polls. An interval
 * is serving for the part of it jobs ran in, the rest idle (`count`). A gap longer
 * than `maxGapMs` (a tool that stopped answering) is not guessed at: the chain starts again. The last
 * samples of the total power are kept (at most MAX_SAMPLES) so the ledger can ask what a window used.
 */
export const MAX_SAMPLES = 8192;

export interface EnergyTotals {
  servingJ: number;
  idleJ: number;
}

interface Sample {
  t: number;
  /** Total watts of the GPUs known at both ends of the interval ending here. */
  w: number;
}

export class EnergyMeter {
  readonly #maxGapMs: number;
  readonly #last = new Map<string, { t: number; w: number }>();
  readonly #samples: Sample[] = [];
  #servingJ = 0;
  #idleJ = 0;

  constructor(maxGapMs: number) {
    this.#maxGapMs = maxGapMs;
  }

  get totals(): EnergyTotals {
    return { servingJ: this.#servingJ, idleJ: this.#idleJ };
  }

  /**
   * Adds a poll's readings; returns the joules of the interval it closes, and whether every GPU with a
   * reading now had one at the previous poll too (else part of the interval went unmeasured).
   */
  add(gpus: readonly Gpu[], t: number): { joules: number; measured: boolean } {
    let joules = 0;
    let watts = 0;
    let measured = false;
    let whole = true;
    // A GPU no longer listed is forgotten: its next reading starts afresh (never integrated across the gap).
    const listed = new Set(gpus.map((g) => `${g.tool}:${g.index}`));
    for (const id of this.#last.keys()) if (!listed.has(id)) this.#last.delete(id);
    for (const g of gpus) {
      const id = `${g.tool}:${g.index}`;
      const prev = this.#last.get(id);
      if (g.powerW === undefined) {
        if (prev) whole = false;
        this.#last.delete(id);
        continue;
      }
      this.#last.set(id, { t, w: g.powerW });
      watts += g.powerW;
      measured = true;
      if (!prev || t <= prev.t || t - prev.t > this.#maxGapMs) {
        whole = false;
        continue;
      }
      joules += ((prev.w + g.powerW) / 2) * ((t - prev.t) / 1000);
    }
    if (measured) {
      this.#samples.push({ t, w: watts });
      if (this.#samples.length > MAX_SAMPLES) this.#samples.splice(0, this.#samples.length - MAX_SAMPLES);
    }
    return { joules, measured: measured && whole };
  }

  /** Counts an interval's joules: the part jobs ran in (serving), the rest idle. */
  count(joules: number, servingJ: number): void {
    const serving = Math.min(joules, Math.max(0, servingJ));
    this.#servingJ += serving;
    this.#idleJ += joules - serving;
  }

  /**
   * Watt-hours the GPUs used between `from` and `to` (ms since the epoch), by trapezoids over the kept
   * samples, the window's ends interpolated; `covered` is false when the samples do not span it.
   */
  whBetween(from: number, to: number): { wh: number; covered: boolean } {
    const s = this.#samples;
    if (to <= from || s.length < 2) return { wh: 0, covered: false };
    const at = (t: number): number | undefined => {
      for (let i = 1; i < s.length; i++) {
        const a = s[i - 1]!;
        const b = s[i]!;
        if (t >= a.t && t <= b.t) {
          if (b.t - a.t > this.#maxGapMs) return undefined;
          return a.w + ((b.w - a.w) * (t - a.t)) / (b.t - a.t || 1);
        }
      }
      return undefined;
    };
    const points: Sample[] = [];
    const wFrom = at(from);
    const wTo = at(to);
    if (wFrom !== undefined) points.push({ t: from, w: wFrom });
    for (const p of s) if (p.t > from && p.t < to) points.push(p);
    if (wTo !== undefined) points.push({ t: to, w: wTo });
    let joules = 0;
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1]!;
      const b = points[i]!;
      if (b.t - a.t > this.#maxGapMs) continue;
      joules += ((a.w + b.w) / 2) * ((b.t - a.t) / 1000);
    }
    return { wh: joules / 3600, covered: wFrom !== undefined && wTo !== undefined };
  }
}
