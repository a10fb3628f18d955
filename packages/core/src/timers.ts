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
  const due = Date.now() + Math.max(0, Number.isFinite(ms) ? ms : MAX_TIMEOUT);
  const arm = () => {
    const left = due - Date.now();
    if (left <= 0) return fn();
    timer = setTimeout(arm, Math.min(left, MAX_TIMEOUT));
    timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}
