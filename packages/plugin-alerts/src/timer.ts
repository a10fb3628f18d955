/**
 * A timer for any delay. Node fires a `setTimeout` over 2^31-1 ms (24.8 days) after 1 ms, and
 * `idle_after_h` goes to 720 h: longer delays are waited in chunks. Unref'd: an alert never holds the
 * process open.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
}

export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  let left = Math.max(0, ms);
  let timer: NodeJS.Timeout;
  const step = () => {
    const now = Math.min(left, MAX_TIMEOUT_MS);
    left -= now;
    timer = setTimeout(left > 0 ? step : fn, now);
    timer.unref();
  };
  step();
  return { clear: () => clearTimeout(timer) };
}
