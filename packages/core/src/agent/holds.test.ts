import { afterEach, describe, expect, it, vi } from 'vitest';
import { longTimeout } from '../timers.js';
import { Holds } from './holds.js';

afterEach(() => {
  vi.useRealTimers();
});

function holds() {
  const changes: { by: string; placed: boolean; paused: boolean }[] = [];
  const h = new Holds({ onChange: (c) => changes.push({ by: c.by, placed: !!c.placed, paused: c.paused }) });
  return { h, changes };
}

describe('holds: what keeps the agent paused', () => {
  it('pauses while any hold exists and resumes when the last is released, the owner first', () => {
    const { h, changes } = holds();
    h.hold('gpu', { reason: 'a game' });
    h.hold('owner', { reason: 'mine' });
    expect(h.list().map((x) => x.by)).toEqual(['owner', 'gpu']);
    h.release('owner');
    expect(h.paused).toBe(true);
    h.release('gpu');
    expect(h.paused).toBe(false);
    expect(changes).toEqual([
      { by: 'gpu', placed: true, paused: true },
      { by: 'owner', placed: true, paused: true },
      { by: 'owner', placed: false, paused: true },
      { by: 'gpu', placed: false, paused: false },
    ]);
  });

  it('holding again as it is tells nothing (a rule polled anew); a new reason is told', () => {
    const { h, changes } = holds();
    h.hold('gpu', { reason: 'a game' });
    h.hold('gpu', { reason: 'a game' });
    h.hold('gpu', { reason: 'another game' });
    expect(changes).toHaveLength(2);
    expect(h.first()?.reason).toBe('another game');
  });

  it('a hold with an end releases itself, even past 2^31-1 ms (Node would fire such a timer at once)', () => {
    vi.useFakeTimers();
    const { h } = holds();
    const day = 86_400_000;
    h.hold('owner', { reason: 'away', until: new Date(Date.now() + 40 * day) });
    vi.advanceTimersByTime(30 * day);
    expect(h.paused).toBe(true);
    vi.advanceTimersByTime(10 * day + 1);
    expect(h.paused).toBe(false);
  });

  it('a hold with an end is released when the machine wakes past it, and not held by a clock stepped back', () => {
    vi.useFakeTimers();
    const hour = 3_600_000;
    const { h } = holds();
    h.hold('owner', { reason: 'an hour', until: new Date(Date.now() + hour) });
    // Suspended for eight hours: the wall clock moves, the monotonic clock (the timers') stands still.
    vi.setSystemTime(Date.now() + 8 * hour);
    expect(h.paused).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(h.paused).toBe(false);

    h.hold('owner', { reason: 'an hour', until: new Date(Date.now() + hour) });
    vi.setSystemTime(Date.now() - 24 * hour);
    vi.advanceTimersByTime(hour);
    expect(h.paused).toBe(false);
  });

  it('a hold scoped to backends withdraws only those and does not pause the agent (issue 31)', () => {
    const { h, changes } = holds();
    h.hold('heat', { reason: 'GPU 1 too hot', backends: ['vllm-1', 'vllm-1'] });
    expect(h.paused).toBe(false);
    expect(h.first()).toBeUndefined();
    expect(h.backendHeld('vllm-1')).toBe('GPU 1 too hot');
    expect(h.backendHeld('llama')).toBeUndefined();
    expect(h.list()).toEqual([expect.objectContaining({ by: 'heat', backends: ['vllm-1'] })]);
    // Held again as it is: nothing told; a wider scope is told.
    h.hold('heat', { reason: 'GPU 1 too hot', backends: ['vllm-1'] });
    h.hold('heat', { reason: 'GPU 1 too hot', backends: ['vllm-1', 'llama'] });
    expect(h.backendHeld('llama')).toBe('GPU 1 too hot');
    // An unscoped hold beside it pauses; the first hold named for the pause is the unscoped one.
    h.hold('gpu', { reason: 'a game' });
    expect(h.paused).toBe(true);
    expect(h.first()?.by).toBe('gpu');
    h.release('gpu');
    h.release('heat');
    expect(h.backendHeld('vllm-1')).toBeUndefined();
    expect(changes).toEqual([
      { by: 'heat', placed: true, paused: false },
      { by: 'heat', placed: true, paused: false },
      { by: 'gpu', placed: true, paused: true },
      { by: 'gpu', placed: false, paused: false },
      { by: 'heat', placed: false, paused: false },
    ]);
    expect(() => h.hold('heat', { reason: 'x', backends: [] })).toThrow(RangeError);
  });

  it('refuses an end that is not a date', () => {
    const { h } = holds();
    expect(() => h.hold('owner', { reason: 'x', until: new Date(Number.NaN) })).toThrow(RangeError);
    expect(h.paused).toBe(false);
  });
});

describe('longTimeout', () => {
  it('fires once, after the whole wait, however long', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    longTimeout(fn, 2 ** 31 + 5_000);
    vi.advanceTimersByTime(2 ** 31);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(5_000);
    expect(fn).toHaveBeenCalledTimes(1);
  });
});

describe('a hold’s reason', () => {
  it('is folded: a process name another user chose never reaches status or a terminal raw', () => {
    const { h } = holds();
    h.hold('gpu', { reason: 'GPU in use: \u001b]0;owned\u0007\u001b[2Jgame' });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: no control character may remain.
    expect(h.first()?.reason).not.toMatch(/[\u0000-\u001f]/);
    expect(h.first()?.reason).toContain('game');
  });
});
