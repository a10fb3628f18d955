import { EventEmitter } from 'node:events';

const relays = new WeakMap<AbortSignal, AbortRelay>();

/**
 * undici takes an `EventEmitter` as a request's abort signal as well as an `AbortSignal` (documented),
 * and on a process that has been idle, listening on an `EventEmitter` costs a fraction of what an
 * `AbortSignal` listener does (bench/undici-cold.ts: about 100 µs more to create a request with an
 * `AbortSignal`; decision 0004). The executor pairs each job's signal with a relay and fires it when
 * it aborts the job; `send()` hands undici the relay where the signal has one, the signal otherwise.
 */
export class AbortRelay extends EventEmitter {
  constructor(readonly signal: AbortSignal) {
    super();
    relays.set(signal, this);
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  /** undici rejects the request with this, as it would with the signal's own reason. */
  get reason(): unknown {
    return this.signal.reason;
  }

  fire(): void {
    this.emit('abort');
  }
}

/** What to hand undici for a signal: its relay when the executor made one, else the signal itself. */
export function abortSourceFor(signal: AbortSignal | undefined): AbortSignal | AbortRelay | undefined {
  return (signal && relays.get(signal)) ?? signal;
}
