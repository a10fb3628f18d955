import { getEventListeners, once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { type TimeoutSignal, timeoutSignal } from './timers.js';

// A full collection on demand, to show that nothing the caller dropped was needed for the timer to fire.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Made in a frame of its own, so that the caller holds nothing but the returned object. */
function detached(ms: number, outer: AbortSignal): TimeoutSignal {
  return timeoutSignal(ms, outer);
}

describe('timeoutSignal', () => {
  it('fires after ms when the caller holds only the returned object, through collections', {
    timeout: 5_000,
  }, async () => {
    // The shape it replaces, AbortSignal.any([outer, AbortSignal.timeout(ms)]), never fires here on Node 20
    // (nodejs/node#57736): the collection takes the timeout signal and the wait runs into the test's timeout.
    const outer = new AbortController();
    const t = detached(200, outer.signal);
    const fired = once(t.signal, 'abort');
    gc();
    await new Promise(setImmediate);
    gc();
    await fired;
    expect(t.timedOut).toBe(true);
    expect((t.signal.reason as DOMException).name).toBe('TimeoutError');
    // Fired, it no longer listens to the outer signal.
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
  });

  it('clear() stops it and lets go of the outer signal', async () => {
    const outer = new AbortController();
    const t = timeoutSignal(50, outer.signal);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(1);
    t.clear();
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
    // Well past its time (a later deadline firing is the event waited on), it has not aborted.
    const later = timeoutSignal(200);
    await once(later.signal, 'abort');
    expect(t.signal.aborted).toBe(false);
    outer.abort();
    expect(t.signal.aborted).toBe(false);
  });

  it('an outer signal aborts it at once, with its reason, and the timer is stopped', () => {
    const a = new AbortController();
    const b = new AbortController();
    const t = timeoutSignal(60_000, a.signal, undefined, b.signal);
    const reason = new Error('closing');
    b.abort(reason);
    expect(t.signal.aborted).toBe(true);
    expect(t.signal.reason).toBe(reason);
    expect(t.timedOut).toBe(false);
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0);
  });

  it('an outer signal already aborted aborts it at once', () => {
    const t = timeoutSignal(60_000, AbortSignal.abort('gone'));
    expect(t.signal.aborted).toBe(true);
    expect(t.signal.reason).toBe('gone');
    expect(t.timedOut).toBe(false);
  });
});
