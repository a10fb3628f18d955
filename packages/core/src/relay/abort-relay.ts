import { EventEmitter } from 'node:events';

/**
 * One job's abort, its only owner (issue 16): an `AbortController` whose signal goes to the plugin, an
 * `EventEmitter` for the engine request fired with it, and the executor's own reactions while it waits
 * on something (the open, the body, the sink), registered and disposed here rather than saved and
 * restored by hand.
 * On a process that has been idle, listening on an `EventEmitter` costs a fraction of what an
 * `AbortSignal` listener does (bench/undici-cold.ts: about 100 µs more to create a request with an
 * `AbortSignal`; decision 0004). The executor passes it to the plugin as `StreamRequest.abort`, and
 * `sendRequest()` listens on it.
 */
export class AbortRelay extends EventEmitter {
  readonly #controller = new AbortController();
  readonly signal: AbortSignal = this.#controller.signal;
  /**
   * Called after the signal's listeners and the request's, newest first. A plain list, not signal listeners:
   * adding a listener to an AbortSignal costs 100 µs or more on a cold agent (decision 0004).
   */
  #reactions: (() => void)[] = [];
  /**
   * The signal's state as a plain field: this relay alone aborts its controller. The relay reads it on
   * every chunk, and `AbortSignal.aborted` (a getter with a brand check) was 2.4% of the agent's main
   * thread at 64 streams (decision 0008, third pass).
   */
  #aborted = false;

  get aborted(): boolean {
    return this.#aborted;
  }

  /** `sendRequest()` rejects the request with this, as it would with the signal's own reason. */
  get reason(): unknown {
    return this.signal.reason;
  }

  /** Registers a reaction to an abort while something is awaited; registered after the abort, it runs at once. */
  react(fn: () => void): void {
    if (this.#aborted) fn();
    else this.#reactions.push(fn);
  }

  /** Disposes of a reaction once what it waited on is settled (no closure made per wait: a hot path). */
  forget(fn: () => void): void {
    const r = this.#reactions;
    // Almost always the newest one.
    if (r[r.length - 1] === fn) r.pop();
    else {
      const i = r.lastIndexOf(fn);
      if (i !== -1) r.splice(i, 1);
    }
  }

  /** Aborts the signal, tells the request, then runs the reactions; false when it was already aborted. */
  abort(reason: unknown): boolean {
    if (this.#aborted) return false;
    // Set first: the signal's listeners see it aborted, as they see the signal.
    this.#aborted = true;
    this.#controller.abort(reason);
    this.emit('abort');
    const reactions = this.#reactions;
    this.#reactions = [];
    for (let i = reactions.length - 1; i >= 0; i--) reactions[i]!();
    return true;
  }
}
