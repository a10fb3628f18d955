/**
 * A timeout of any length. Node runs a `setTimeout` longer than 2^31-1 ms (24.8 days) after 1 ms, so a
 * long wait is taken in chunks; unref'd, so a pending one never keeps the process alive.
 */
const MAX_TIMEOUT = 2 ** 31 - 1;

export interface LongTimer {
  cancel(): void;
}

export function longTimeout(fn: () => void, ms: number): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  // Counted in timer chunks, which Node runs on the monotonic clock: a wall clock stepped back or forth
  // neither holds nor fires the wait. Always through a timer, even when due: the caller has its handle
  // before `fn` runs.
  let left = Math.max(0, Number.isFinite(ms) ? ms : MAX_TIMEOUT);
  const arm = () => {
    const chunk = Math.min(left, MAX_TIMEOUT);
    left -= chunk;
    timer = setTimeout(left > 0 ? arm : fn, chunk);
    timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}
