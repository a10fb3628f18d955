import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

/**
 * `ws` masks every frame the agent sends (a client must, RFC 6455 5.3). Without `bufferutil` it does so
 * in a JavaScript loop, byte by byte: about 0.7 µs for a 340-byte `job_chunk` frame against 0.09 µs
 * natively, on every event (decision 0008, third pass). `ws` requires it from its own folder when
 * present, so core depends on it (optional: without a prebuilt binary for the platform, `ws` falls back).
 */
const fromWs = createRequire(createRequire(import.meta.url).resolve('ws'));

describe('frame masking', () => {
  it('ws finds bufferutil, loaded natively rather than its JavaScript fallback, and it masks right', () => {
    const native = fromWs('bufferutil') as {
      mask: (src: Buffer, mask: Buffer, out: Buffer, offset: number, length: number) => void;
    };
    const fallback = fromWs('bufferutil/fallback') as typeof native;
    expect(native.mask).not.toBe(fallback.mask);

    const src = Buffer.from('x'.repeat(340));
    const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
    const out = Buffer.alloc(src.length + 6);
    native.mask(src, key, out, 6, src.length);
    const expected = Buffer.from(src.map((b, i) => b ^ key[i & 3]!));
    expect(out.subarray(6).equals(expected)).toBe(true);
  });
});
