/**
 * Reconnect backoff of PROTOCOL.md section 6: starts at 1 s, doubles after each
 * wait up to 60 s, each wait multiplied by a random factor in [0.8, 1.2].
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  random?: () => number;
}

export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #random: () => number;
  #base: number;

  constructor(opts: BackoffOptions = {}) {
    this.#initial = opts.initialMs ?? 1_000;
    this.#max = opts.maxMs ?? 60_000;
    this.#random = opts.random ?? Math.random;
    this.#base = this.#initial;
  }

  /** The next wait, then doubles the base for the one after. */
  next(): number {
    const wait = this.#base * (0.8 + 0.4 * this.#random());
    this.#base = Math.min(this.#base * 2, this.#max);
    return Math.round(wait);
  }

  /** After a session that reached auth_ok. */
  reset(): void {
    this.#base = this.#initial;
  }

  /** The base of the next wait, before jitter. */
  get base(): number {
    return this.#base;
  }
}
