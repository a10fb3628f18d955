import { describe, expect, it } from 'vitest';
import { AbortRelay, abortSourceFor } from './abort-relay.js';

describe('AbortRelay', () => {
  it('stands in for the signal it was made for, and only that one', () => {
    const controller = new AbortController();
    const relay = new AbortRelay(controller.signal);
    expect(abortSourceFor(controller.signal)).toBe(relay);
    const other = new AbortController().signal;
    expect(abortSourceFor(other)).toBe(other);
    expect(abortSourceFor(undefined)).toBeUndefined();
  });

  it('carries the signal state and reason, and tells its listeners when fired', () => {
    const controller = new AbortController();
    const relay = new AbortRelay(controller.signal);
    let heard = 0;
    relay.once('abort', () => heard++);
    expect(relay.aborted).toBe(false);
    const reason = new Error('cancel');
    controller.abort(reason);
    relay.fire();
    expect(heard).toBe(1);
    expect(relay.aborted).toBe(true);
    expect(relay.reason).toBe(reason);
  });
});
