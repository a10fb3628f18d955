import { describe, expect, it } from 'vitest';
import { JobAttribution, type JobEnergy } from './attribution.js';
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
      gpus: [at(86)],
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

/** Polls as the watch makes them: the meter's interval, shared by the jobs in it, then counted. */
function poll(m: EnergyMeter, jobs: JobAttribution, t: number, prev: number | undefined, watts?: number) {
  const { joules, measured } = m.add([at(60, watts)], t);
  m.count(joules, prev === undefined ? 0 : jobs.interval(prev, t, joules, measured));
  jobs.polled(t);
}

describe('EnergyMeter (issue 31)', () => {
  it('integrates power by trapezoids, serving and idle apart, and answers for a window', () => {
    const m = new EnergyMeter(60_000);
    m.add([at(60, 300)], 0);
    const all = (j: number) => m.count(j, j);
    all(m.add([at(60, 300)], 10_000).joules); // 300 W for 10 s serving: 3000 J
    m.count(m.add([at(60, 100)], 20_000).joules, 0); // 300 -> 100 W over 10 s idle: 2000 J
    all(m.add([at(60, 100)], 30_000).joules); // 100 W for 10 s serving: 1000 J
    expect(m.totals).toEqual({ servingJ: 4000, idleJ: 2000 });
    expect(m.whBetween(0, 30_000)).toEqual({ wh: 6000 / 3600, covered: true });
    // Inside one interval, the window's ends are interpolated: 5 s at 300 W.
    expect(m.whBetween(2_000, 7_000).wh).toBeCloseTo((300 * 5) / 3600, 9);
    expect(m.whBetween(25_000, 40_000).covered).toBe(false);
  });

  it('does not guess across a gap or an unknown reading', () => {
    const m = new EnergyMeter(60_000);
    m.add([at(60, 200)], 0);
    expect(m.add([at(60, 200)], 120_000)).toEqual({ joules: 0, measured: false }); // two minutes unread
    expect(m.add([at(60, undefined)], 125_000)).toEqual({ joules: 0, measured: false });
    expect(m.add([at(60, 200)], 130_000)).toEqual({ joules: 0, measured: false }); // the chain starts again
    expect(m.add([at(60, 200)], 131_000)).toEqual({ joules: 200, measured: true });
  });

  it('does not guess across a GPU the tool left out of a poll, and forgets GPUs no longer listed', () => {
    const m = new EnergyMeter(60_000);
    const g = (index: number, w: number) => ({ ...at(60, w), index });
    m.add([g(0, 200), g(1, 100)], 0);
    expect(m.add([g(0, 200)], 1_000)).toEqual({ joules: 200, measured: true });
    // GPU 1 is back: its last reading is two polls old, so its share is unmeasured, not guessed.
    expect(m.add([g(0, 200), g(1, 100)], 2_000)).toEqual({ joules: 200, measured: false });
    expect(m.add([g(0, 200), g(1, 100)], 3_000)).toEqual({ joules: 300, measured: true });
  });
});

describe('JobAttribution (issue 31)', () => {
  it('gives two overlapping jobs the energy of their time, shared by tokens, and charges idle time to nobody', () => {
    // 300 W until 10 s, 100 W from 11 s; polls every second. A runs 2-12 s (1000 tokens), B 6-16 s (500).
    const told: JobEnergy[] = [];
    const jobs = new JobAttribution((e) => told.push(e));
    const m = new EnergyMeter(60_000);
    let prev: number | undefined;
    for (let t = 0; t <= 20_000; t += 1000) {
      if (t === 3_000) jobs.started('A', 2_000);
      if (t === 7_000) jobs.started('B', 6_000);
      if (t === 12_000) jobs.ended('A', 12_000, 1000);
      if (t === 16_000) jobs.ended('B', 16_000, 500);
      poll(m, jobs, t, prev, t <= 10_000 ? 300 : 100);
      prev = t;
    }
    // A alone 4 s at 300 W (1200 J); both 4 s at 300 W, 1 s 300->100, 1 s at 100 W (1500 J: A 2/3, B 1/3);
    // B alone 4 s at 100 W (400 J). Idle: 2 s at 300 W, 4 s at 100 W.
    const wh = Object.fromEntries(told.map((e) => [e.jobId, e.wh]));
    expect(wh.A).toBeCloseTo(2200 / 3600, 6);
    expect(wh.B).toBeCloseTo(900 / 3600, 6);
    expect(told.every((e) => e.complete)).toBe(true);
    expect(m.totals.idleJ).toBeCloseTo(1000, 6);
    expect(m.totals.servingJ).toBeCloseTo(3100, 6);
    // A's figure waits for B, which shared its intervals.
    expect(told.map((e) => e.jobId)).toEqual(['A', 'B']);
  });

  it('charges a job only the part of an interval it ran in', () => {
    const told: JobEnergy[] = [];
    const jobs = new JobAttribution((e) => told.push(e));
    const m = new EnergyMeter(60_000);
    let prev: number | undefined;
    for (let t = 0; t <= 6_000; t += 1000) {
      if (t === 3_000) jobs.started('D', 2_500);
      if (t === 5_000) jobs.ended('D', 4_500, 40);
      poll(m, jobs, t, prev, 300);
      prev = t;
    }
    expect(told).toEqual([{ jobId: 'D', wh: expect.closeTo(600 / 3600, 9), complete: true }]);
    expect(m.totals).toEqual({ servingJ: expect.closeTo(600, 9), idleJ: expect.closeTo(1200, 9) });
  });

  it('cuts an interval at the jobs’ starts and ends: a job starting mid-interval takes no share before it', () => {
    // 300 W, polls each second. A runs 1-4 s (300 tokens), B 1.5-2.5 s (300 tokens, three times A's rate).
    const told: JobEnergy[] = [];
    const jobs = new JobAttribution((e) => told.push(e));
    const m = new EnergyMeter(60_000);
    let prev: number | undefined;
    for (let t = 0; t <= 5_000; t += 1000) {
      if (t === 1_000) jobs.started('A', 1_000);
      if (t === 2_000) jobs.started('B', 1_500);
      if (t === 3_000) jobs.ended('B', 2_500, 300);
      if (t === 4_000) jobs.ended('A', 4_000, 300);
      poll(m, jobs, t, prev, 300);
      prev = t;
    }
    // A alone 0.5 s (150 J) and 1.5 s (450 J); together 1 s (300 J) shared 1:3.
    const wh = Object.fromEntries(told.map((e) => [e.jobId, e.wh]));
    expect(wh.A).toBeCloseTo(675 / 3600, 9);
    expect(wh.B).toBeCloseTo(225 / 3600, 9);
  });

  it('tells a job with no reading as incomplete', () => {
    const told: JobEnergy[] = [];
    const jobs = new JobAttribution((e) => told.push(e));
    const m = new EnergyMeter(60_000);
    poll(m, jobs, 0, undefined, 200);
    jobs.started('C', 500);
    poll(m, jobs, 1000, 0, undefined);
    jobs.ended('C', 1500, 10);
    poll(m, jobs, 2000, 1000, 200);
    expect(told).toEqual([{ jobId: 'C', wh: 0, complete: false }]);
  });
});
