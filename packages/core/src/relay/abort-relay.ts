import { EventEmitter } from 'node:events';

const relays = new WeakMap<AbortSignal, AbortRelay>();

/**
 * One job's abort: an `AbortController` for the plugin, and an `EventEmitter` for undici, fired together.
 * undici takes an `EventEmitter` as a request's abort signal as well as an `AbortSignal` (documented),
 * and on a process that has been idle, listening on an `EventEmitter` costs a fraction of what an
 * `AbortSignal` listener does (bench/undici-cold.ts: about 100 µs more to create a request with an
 * `AbortSignal`; decision 0004). `send()` hands undici the relay where the signal has one, the signal
 * otherwise.
 */
export class AbortRelay extends EventEmitter {
  readonly #controller = new AbortController();
  readonly signal: AbortSignal = this.#controller.signal;

  constructor() {
    super();
    relays.set(this.signal, this);
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  /** undici rejects the request with this, as it would with the signal's own reason. */
  get reason(): unknown {
    return this.signal.reason;
  }

  /** Aborts the signal, then tells the relay's listeners; false when it was already aborted. */
  abort(reason: unknown): boolean {
    if (this.signal.aborted) return false;
    this.#controller.abort(reason);
    this.emit('abort');
    return true;
  }
}

/** What to hand undici for a signal: its relay when the executor made one, else the signal itself. */
export function abortSourceFor(signal: AbortSignal | undefined): AbortSignal | AbortRelay | undefined {
  return (signal && relays.get(signal)) ?? signal;
}
