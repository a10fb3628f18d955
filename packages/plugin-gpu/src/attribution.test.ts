import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JobAttribution } from './attribution.js';

/**
 * Energy is conserved (issue 31): whatever the order of polls, job starts and ends, the jobs' figures add
 * up to the serving energy the polls counted, and every job is told once. Two polls at the same
 * millisecond (or a wall clock stepped back) left a job in flight waiting for good, its energy never told,
 * until this property found it.
 */
type Step =
  | { kind: 'start' }
  | { kind: 'end'; pick: number; tokens: number }
  | { kind: 'poll'; joules: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant<Step>({ kind: 'start' }),
  fc.record({ kind: fc.constant('end' as const), pick: fc.nat(), tokens: fc.nat({ max: 500 }) }),
  fc.record({ kind: fc.constant('poll' as const), joules: fc.double({ min: 0, max: 500, noNaN: true }) }),
);

describe('job attribution', () => {
  it('counts an interval one job covers whole as all serving, never more: the idle rest is never below 0', () => {
    const a = new JobAttribution(() => {});
    a.started('j', 0);
    // 300 W over 85 ms: (25.5 * 85) / 85 rounds above 25.5, which left idle at -3.6e-15 (a period the
    // ledger refuses, its serving part lost with it).
    const joules = 300 * (85 / 1000);
    const serving = a.interval(0, 85, joules, true);
    expect(serving).toBe(joules);
    expect(joules - serving).toBe(0);
  });

  it('shares out exactly the serving energy, once per job, in any order of events', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), step), { maxLength: 80 }), (steps) => {
        const told = new Map<string, number>();
        const a = new JobAttribution((e) => {
          expect(told.has(e.jobId)).toBe(false);
          told.set(e.jobId, e.wh * 3600);
        });
        let t = 0;
        let last: number | undefined;
        let serving = 0;
        let n = 0;
        const open: string[] = [];
        const poll = (joules: number) => {
          if (last !== undefined) serving += a.interval(last, t, joules, true);
          last = t;
          a.polled(t);
        };
        for (const [dt, s] of steps) {
          t += dt;
          if (s.kind === 'start') {
            const id = `j${n++}`;
            open.push(id);
            a.started(id, t);
          } else if (s.kind === 'end' && open.length > 0) {
            a.ended(open.splice(s.pick % open.length, 1)[0]!, t, s.tokens);
          } else if (s.kind === 'poll') poll(s.joules);
        }
        // Every job ends, and a poll reaches past the last end: all are told.
        for (const id of open.splice(0)) a.ended(id, ++t, 1);
        t += 1;
        poll(100);
        t += 1;
        poll(100);
        expect(told.size).toBe(n);
        const sum = [...told.values()].reduce((x, y) => x + y, 0);
        expect(Math.abs(sum - serving)).toBeLessThanOrEqual(1e-9 * Math.max(1, serving));
      }),
      { numRuns: 1000 },
    );
  });

  it('shares out the 10,000 jobs a tool failing for hours leaves waiting, each once (its time: bench/gpu-attribution.ts)', () => {
    const n = 10_000;
    const told: number[] = [];
    const a = new JobAttribution((e) => told.push(e.wh));
    a.interval(0, 5_000, 100, true);
    a.polled(5_000);
    // No poll answers while they run, one after another (the tool hangs, each poll killed).
    let busy = 0;
    for (let i = 0; i < n; i++) {
      a.started(`j${i}`, 6_000 + i * 3_000);
      a.ended(`j${i}`, 8_000 + i * 3_000 + (i % 7), 50);
      busy += 2_000 + (i % 7);
    }
    // It answers again: one interval over them all, its energy shared by the time each job ran.
    const t1 = 10_000 + n * 3_000;
    a.interval(5_000, t1, 1e6, true);
    a.polled(t1);
    expect(told).toHaveLength(n);
    expect(told.reduce((x, y) => x + y, 0)).toBeCloseTo(((1e6 / (t1 - 5_000)) * busy) / 3_600, 6);
  });
});
