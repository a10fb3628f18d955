import { describe, expect, it } from 'vitest';
import { AbortRelay } from './abort-relay.js';

describe('AbortRelay', () => {
  it('aborts its signal with the reason, then tells its listeners, once', () => {
    const relay = new AbortRelay();
    const order: string[] = [];
    // Its own state agrees with the signal's wherever it is read, the signal's listeners included.
    relay.signal.addEventListener('abort', () => order.push(`signal ${relay.aborted}`));
    relay.on('abort', () => order.push(`relay ${relay.aborted}`));
    expect(relay.aborted).toBe(false);
    const reason = new Error('cancel');
    expect(relay.abort(reason)).toBe(true);
    expect(relay.abort(new Error('again'))).toBe(false);
    expect(order).toEqual(['signal true', 'relay true']);
    expect(relay.aborted).toBe(true);
    expect(relay.reason).toBe(reason);
    expect(relay.signal.reason).toBe(reason);
  });

  it('runs the registered reactions once, newest first, after undici; a forgotten one never', () => {
    const relay = new AbortRelay();
    const order: string[] = [];
    relay.on('abort', () => order.push('undici'));
    relay.react(() => order.push('body'));
    const disposed = () => order.push('disposed');
    relay.react(disposed);
    relay.react(() => order.push('wait'));
    relay.forget(disposed);
    relay.abort(new Error('cancel'));
    relay.abort(new Error('again'));
    expect(order).toEqual(['undici', 'wait', 'body']);
    // Registered once aborted: runs at once.
    relay.react(() => order.push('late'));
    expect(order.at(-1)).toBe('late');
  });
});
