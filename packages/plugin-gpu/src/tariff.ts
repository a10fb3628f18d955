import { parseWindow, windowAt } from '@usepod-agent/core';
import type { EnergySection } from './section.js';

// `@usepod-agent/plugin-gpu/tariff`: `[energy]`'s schema and price for readers of it that need no GPU (the
// ledger's doctor, `earnings`); core and zod only, none of the plugin's watch, tools or processes.
export { type EnergySection, energySection } from './section.js';

/**
 * The operator's electricity price (issue 31), USDC per kWh: `[energy] price_per_kwh`, and time-of-use
 * periods (`[[energy.tariff]]`, the `[schedule]` grammar, in `[energy] timezone`, default local) that
 * take precedence in their hours, the first that matches. Undefined where neither gives a price.
 */
export interface Tariff {
  priceAt(t: number): number | undefined;
  /** Whether any price is set at all. */
  readonly priced: boolean;
}

export function tariffOf(cfg: EnergySection | undefined): Tariff {
  const flat = cfg?.price_per_kwh;
  const periods = (cfg?.tariff ?? []).map((p) => ({ window: parseWindow(p.when), price: p.price_per_kwh }));
  const windows = periods.map((p) => p.window);
  const tz = cfg?.timezone;
  return {
    priced: flat !== undefined || periods.length > 0,
    priceAt(t) {
      if (periods.length === 0) return flat;
      const w = windowAt(windows, tz, t);
      return w ? periods[windows.indexOf(w)]!.price : flat;
    },
  };
}
