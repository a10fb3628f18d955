import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chunkFrame, chunkFramePrefix } from './chunk-frame.js';

const ID = '3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c';

describe('job_chunk frames built from a prefix', () => {
  it('equal the serialised frame of PROTOCOL.md 5.3, for views into larger buffers too', () => {
    const prefix = chunkFramePrefix(ID);
    const pool = randomBytes(4096);
    // undici hands over slices of its socket buffer: a view's offset must not leak other bytes in.
    for (const [from, to] of [
      [0, 0],
      [0, 1],
      [1, 3],
      [7, 300],
      [1000, 4096],
    ] as const) {
      const view = new Uint8Array(pool.buffer, pool.byteOffset + from, to - from);
      const text = chunkFrame(prefix, view).toString('utf8');
      expect(text).toBe(
        JSON.stringify({ type: 'job_chunk', job_id: ID, data: pool.subarray(from, to).toString('base64') }),
      );
      expect(Buffer.from(JSON.parse(text).data, 'base64').equals(pool.subarray(from, to))).toBe(true);
    }
  });
});
