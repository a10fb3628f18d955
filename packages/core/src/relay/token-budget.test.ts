import { describe, expect, it } from 'vitest';
import { reservationFor, TokenBudget } from './token-budget.js';

const frame = (request: Record<string, unknown>) => ({
  type: 'job' as const,
  job_id: 'j',
  model_id: 'm',
  request,
  format: 'openai' as const,
  deadline_ms: 60_000,
});

describe('token budget (limits.max_tokens_per_minute)', () => {
  it('reserves the prompt estimate plus max_tokens (1024 when unset)', () => {
    expect(reservationFor(frame({ max_tokens: 100 }), 400)).toBe(200);
    expect(reservationFor(frame({ max_completion_tokens: 7 }), 4)).toBe(8);
    expect(reservationFor(frame({}), 0)).toBe(1024);
  });

  it('counts real usage for 60 s, then forgets it', () => {
    let now = 0;
    const b = new TokenBudget(100, () => now);
    expect(b.tryReserve('a', 80)).toBe(true);
    expect(b.tryReserve('b', 30)).toBe(false);
    b.settle('a', 50);
    expect(b.used()).toBe(50);
    expect(b.tryReserve('b', 30)).toBe(true);
    b.settle('b', 30);
    now = 59_999;
    expect(b.used()).toBe(80);
    now = 60_001;
    expect(b.used()).toBe(0);
  });

  it('admits one oversize job when nothing else is counted, and never limits without a limit', () => {
    const b = new TokenBudget(10);
    expect(b.tryReserve('big', 500)).toBe(true);
    expect(b.tryReserve('next', 1)).toBe(false);
    const open = new TokenBudget(undefined);
    expect(open.tryReserve('x', 1e9)).toBe(true);
  });
});
