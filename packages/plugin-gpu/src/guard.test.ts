import { describe, expect, it } from 'vitest';
import { EnergyMeter } from './energy.js';
import { HeatGuard } from './heat.js';
import type { Gpu } from './read.js';
import { yieldSection } from './section.js';

const at = (tempC: number | undefined, powerW?: number): Gpu => ({
  tool: 'nvidia-smi',
  index: 0,
  name: undefined,
  utilPct: undefined,
  freeMb: undefined,
  totalMb: undefined,
  powerW,
  powerLimitW: undefined,
  tempC,
});

describe('HeatGuard (issue 31)', () => {
  const guard = () => new HeatGuard(yieldSection.parse({ max_temp_c: 80, max_power_w: 300, cooldown_s: 10 }));

  it('holds after two polls over, not one; an unknown reading neither counts nor resets', () => {
    const g = guard();
    expect(g.update([at(85)], 0)).toBeUndefined();
    expect(g.update([at(undefined)], 1000)).toBeUndefined();
    expect(g.update([at(86)], 2000)).toEqual({
      hold: 'too hot: GPU 0 (nvidia-smi) at 86 °C, over max_temp_c 80',
    });
    const spike = guard();
    expect(spike.update([at(60, 350)], 0)).toBeUndefined();
    expect(spike.update([at(60, 250)], 1000)).toBeUndefined();
    expect(spike.update([at(60, 350)], 2000)).toBeUndefined();
  });

  it('lifts only after cooldown_s under the limit less resume_below_c', () => {
    const g = guard();
    g.update([at(90)], 0);
    g.update([at(90)], 1000);
    expect(g.update([at(78)], 2000)).toBeUndefined(); // under 80 but over 75
    expect(g.update([at(74)], 3000)).toBeUndefined(); // cooling starts
    expect(g.update([at(76)], 8000)).toBeUndefined(); // warm again: the cooldown restarts
    expect(g.update([at(70)], 9000)).toBeUndefined();
    expect(g.update([at(70)], 18_999)).toBeUndefined();
    expect(g.update([at(70)], 19_000)).toEqual({ release: expect.stringMatching(/^too hot/) });
    expect(g.reason).toBeUndefined();
  });
});

describe('EnergyMeter (issue 31)', () => {
  it('integrates power by trapezoids, serving and idle apart, and answers for a window', () => {
    const m = new EnergyMeter(60_000);
    m.add([at(60, 300)], 0, false);
    m.add([at(60, 300)], 10_000, true); // 300 W for 10 s serving: 3000 J
    m.add([at(60, 100)], 20_000, false); // 300 -> 100 W over 10 s idle: 2000 J
    m.add([at(60, 100)], 30_000, true); // 100 W for 10 s serving: 1000 J
    expect(m.totals).toEqual({ servingJ: 4000, idleJ: 2000 });
    expect(m.whBetween(0, 30_000)).toEqual({ wh: 6000 / 3600, covered: true });
    // Inside one interval, the window's ends are interpolated: 5 s at 300 W.
    expect(m.whBetween(2_000, 7_000).wh).toBeCloseTo((300 * 5) / 3600, 9);
    expect(m.whBetween(25_000, 40_000).covered).toBe(false);
  });

  it('does not guess across a gap or an unknown reading', () => {
    const m = new EnergyMeter(60_000);
    m.add([at(60, 200)], 0, true);
    m.add([at(60, 200)], 120_000, true); // two minutes without a reading: not counted
    m.add([at(60, undefined)], 125_000, true);
    m.add([at(60, 200)], 130_000, true); // the chain starts again here
    expect(m.totals).toEqual({ servingJ: 0, idleJ: 0 });
  });
});
