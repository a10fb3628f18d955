import { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { hello, type Rig, rig } from './helpers.js';

/**
 * Adaptive coalescing in the session's send path (issue 22): the first frame of an event-loop turn is
 * written at once, inside `send()`; the rest of a burst leaves in a bounded number of writes. Counted on
 * the agent's real socket to the coordinator: its writes are observed, not replaced.
 */
let r: Rig | undefined;
const restore: (() => void)[] = [];
afterEach(async () => {
  for (const f of restore.splice(0)) f();
  await r?.close();
  r = undefined;
});

interface Write {
  /** Bytes the write carries. */
  bytes: number;
  /** Whether it happened inside the agent's `ws.send()` call. */
  inSend: boolean;
}

/** Observes the writes of the agent's socket to the coordinator at `port`, and whether each is inside a send. */
function watchWrites(port: number): Write[] {
  const writes: Write[] = [];
  let sending = 0;
  const wsProto = WebSocket.prototype as unknown as { send(...args: unknown[]): void };
  const send = wsProto.send;
  wsProto.send = function (this: WebSocket, ...args: unknown[]) {
    sending++;
    try {
      return send.apply(this, args);
    } finally {
      sending--;
    }
  };
  const proto = Socket.prototype as unknown as {
    _writeGeneric(writev: boolean, data: unknown, encoding: string, cb: () => void): void;
  };
  const generic = proto._writeGeneric;
  proto._writeGeneric = function (this: Socket, writev, data, encoding, cb) {
    if (this.remotePort === port) {
      const bytes = writev
        ? (data as { chunk: Buffer | string }[]).reduce((n, c) => n + Buffer.byteLength(c.chunk), 0)
        : Buffer.byteLength(data as Buffer);
      writes.push({ bytes, inSend: sending > 0 });
    }
    return generic.call(this, writev, data, encoding, cb);
  };
  restore.push(() => {
    wsProto.send = send;
    proto._writeGeneric = generic;
  });
  return writes;
}

describe('coalescing of job frames', () => {
  it('writes the first frame of a turn at once, inside send(): one stream gains no delay', async () => {
    r = await rig();
    const port = Number(new URL(r.t.coordinator.url).port);
    r.engine.behave({ kind: 'controlled' });
    const job = r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello });
    const stream = await r.engine.controlled.waitFor();
    const writes = watchWrites(port);
    await stream.write('data: {"choices":[{"index":0,"delta":{"content":"one"}}]}\n\n');
    await job.firstChunk();
    // The chunk frame (the only frame of its turn) left in the send() call itself.
    expect(writes.length).toBeGreaterThan(0);
    expect(writes[0]!.inSend).toBe(true);
    stream.end('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    await job.done();
  });

  it('writes a burst of 64 frames of one turn in a bounded number of writes', async () => {
    r = await rig({ config: { limits: { max_concurrent: 64 } } });
    const port = Number(new URL(r.t.coordinator.url).port);
    r.engine.always({ kind: 'controlled' });
    const jobs = Array.from({ length: 64 }, () =>
      r!.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }),
    );
    const streams = [await r.engine.controlled.waitFor()];
    while (streams.length < 64) streams.push(await r.engine.controlled.next());
    // Every stream's first chunk is written before the agent reads any: they arrive in one turn of its loop.
    await Promise.all(streams.map((s) => s.res.socket!.cork()));
    for (const s of streams) s.res.write('data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n');
    const writes = watchWrites(port);
    for (const s of streams) s.res.socket!.uncork();
    await Promise.all(jobs.map((j) => j.firstChunk()));
    const frames = writes.reduce((n, w) => n + w.bytes, 0);
    expect(frames).toBeGreaterThan(0);
    // Without coalescing: one write per frame (64). With it: the first at once, then one per 16 frames.
    expect(writes.length).toBeLessThanOrEqual(12);
    for (const s of streams)
      s.end('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    for (const j of jobs) expect((await j.done()).type).toBe('job_done');
  });
});
