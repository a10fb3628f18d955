import { describe, expect, it } from 'vitest';
import { addSpan, BUCKET_MS, MAX_SPANS, spansMs } from './buckets.js';

describe('busy spans of a quarter hour (issue 28)', () => {
  it('merges a span with every span it touches and keeps the rest in order', () => {
    let s: number[] = [];
    s = addSpan(s, 100, 200);
    s = addSpan(s, 300, 400);
    s = addSpan(s, 500, 600);
    expect(s).toEqual([100, 200, 300, 400, 500, 600]);
    expect(addSpan(s, 150, 520)).toEqual([100, 600]);
    expect(addSpan(s, 200, 300)).toEqual([100, 400, 500, 600]);
    expect(addSpan(s, 0, 50)).toEqual([0, 50, 100, 200, 300, 400, 500, 600]);
    expect(spansMs(s)).toBe(300);
    // Clipped to a window starting mid-quarter.
    expect(spansMs(s, 350)).toBe(150);
  });

  it('keeps at most MAX_SPANS spans, filling the shortest gap', () => {
    let s: number[] = [];
    for (let i = 0; i < MAX_SPANS; i++) s = addSpan(s, i * 400, i * 400 + 100);
    expect(s.length).toBe(MAX_SPANS * 2);
    // One more, 10 ms after the last one: that gap is the shortest and is filled.
    const last = (MAX_SPANS - 1) * 400 + 100;
    s = addSpan(s, last + 10, last + 20);
    expect(s.length).toBe(MAX_SPANS * 2);
    expect(s.slice(-2)).toEqual([last - 100, last + 20]);
    expect(spansMs(s)).toBe(MAX_SPANS * 100 + 20);
    expect(last + 20).toBeLessThan(BUCKET_MS);
  });
});
