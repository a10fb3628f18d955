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

/** How often `atTime` looks at the wall clock. */
export const WALL_CHECK_MS = 60_000;

/**
 * Calls `fn` once at the wall-clock time `at` (ms since the epoch): after `at - now` on the monotonic clock
 * (a wall clock stepped back does not hold it), or sooner once the wall clock is seen past `at` (looked at
 * every `checkMs`). The monotonic clock stands still while the machine sleeps: a pause until 18:00 across
 * a night's suspend would otherwise end as many hours late as the machine slept.
 */
export function atTime(fn: () => void, at: number, checkMs = WALL_CHECK_MS): LongTimer {
  let done = false;
  const stop = (): void => {
    done = true;
    timer.cancel();
    clearInterval(check);
  };
  const fire = (): void => {
    if (done) return;
    stop();
    fn();
  };
  const timer = longTimeout(fire, at - Date.now());
  const check = setInterval(() => {
    if (Date.now() >= at) fire();
  }, checkMs);
  check.unref();
  return { cancel: stop };
}

export interface TimeoutSignal {
  /** Aborts `ms` after the call (reason: a `TimeoutError`), or as soon as one of the given signals aborts (its reason). */
  readonly signal: AbortSignal;
  /** True once the timer, not a given signal, aborted `signal`. */
  readonly timedOut: boolean;
  /** Stops the timer and stops following the given signals; call it (in `finally`) when the work is done. */
  clear(): void;
}

/**
 * A deadline signal, optionally joined with others: what `AbortSignal.any([...signals, AbortSignal.timeout(ms)])`
 * means, without its flaw on Node 20: there a composite holds its sources weakly and `AbortSignal.timeout`'s
 * timer holds its signal weakly, so the timeout may be collected before it fires and the wait never ends
 * (nodejs/node#57736). Here the timer and each given signal's listener hold the controller until it aborts
 * or `clear()` is called.
 */
export function timeoutSignal(ms: number, ...signals: (AbortSignal | undefined)[]): TimeoutSignal {
  const controller = new AbortController();
  const sources = signals.filter((s): s is AbortSignal => s !== undefined);
  let timedOut = false;
  let timer: LongTimer | undefined;
  const clear = () => {
    timer?.cancel();
    for (const s of sources) s.removeEventListener('abort', follow);
  };
  function follow(this: AbortSignal) {
    clear();
    controller.abort(this.reason);
  }
  const aborted = sources.find((s) => s.aborted);
  if (aborted) controller.abort(aborted.reason);
  else {
    for (const s of sources) s.addEventListener('abort', follow, { once: true });
    timer = longTimeout(() => {
      clear();
      timedOut = true;
      controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
    }, ms);
  }
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    clear,
  };
}

/** What `within` gives when `ms` passed before the work settled. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * `work`'s value (or its failure), or `TIMED_OUT` once `ms` passed first. The timer holds the process
 * while it waits (a module whose top-level await never settles would otherwise let Node end silently)
 * and is cleared after; a failure of the work after its time is dropped, never unhandled. The work is
 * not stopped: a plugin's import, hook or check cannot be.
 */
export async function within<T>(work: () => T | Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  const call = Promise.resolve().then(work);
  call.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      call,
      new Promise<typeof TIMED_OUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMED_OUT), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
