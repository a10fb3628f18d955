/** Waits for a condition signalled by events, with a deadline so a broken test fails instead of hanging. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A list whose `waitFor` resolves as soon as a matching item is pushed (or already was). */
interface Waiter<T> {
  pred: (t: T) => boolean;
  resolve: (t: T) => void;
}

export class EventLog<T> {
  readonly items: T[] = [];
  #waiters: Waiter<T>[] = [];

  push(item: T): void {
    this.items.push(item);
    const still: Waiter<T>[] = [];
    for (const w of this.#waiters) {
      if (w.pred(item)) w.resolve(item);
      else still.push(w);
    }
    this.#waiters = still;
  }

  waitFor(pred: (t: T) => boolean = () => true, timeoutMs = 10_000, what = 'an event'): Promise<T> {
    const found = this.items.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return withTimeout(new Promise<T>((resolve) => this.#waiters.push({ pred, resolve })), timeoutMs, what);
  }

  /** Waits for a matching item pushed after this call (ignores history). */
  next(pred: (t: T) => boolean = () => true, timeoutMs = 10_000, what = 'an event'): Promise<T> {
    return withTimeout(new Promise<T>((resolve) => this.#waiters.push({ pred, resolve })), timeoutMs, what);
  }

  clear(): void {
    this.items.length = 0;
  }
}
