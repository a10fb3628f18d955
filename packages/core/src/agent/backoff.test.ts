import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.js';

describe('reconnect backoff (PROTOCOL.md section 6)', () => {
  it('starts at 1 s, doubles up to 60 s', () => {
    const b = new Backoff({ random: () => 0.5 });
    const waits = Array.from({ length: 9 }, () => b.next());
    expect(waits).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  });

  it('multiplies each wait by a factor in [0.8, 1.2]', () => {
    expect(new Backoff({ random: () => 0 }).next()).toBe(800);
    expect(new Backoff({ random: () => 0.999999 }).next()).toBe(1200);
    const b = new Backoff();
    for (let i = 0; i < 200; i++) {
      const base = b.base;
      const w = b.next();
      expect(w).toBeGreaterThanOrEqual(Math.floor(base * 0.8));
      expect(w).toBeLessThanOrEqual(Math.ceil(base * 1.2));
    }
  });

  it('resets to 1 s', () => {
    const b = new Backoff({ random: () => 0.5 });
    b.next();
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(1000);
  });
});
