import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readChunks } from './read-chunks.js';

describe('readChunks', () => {
  it('hands over every byte in order and resolves at the end', async () => {
    const body = new PassThrough();
    const seen: Buffer[] = [];
    const done = readChunks(body, (b) => {
      seen.push(b);
      return true;
    });
    body.write('data: a\n\n');
    body.write('data: b\n\n');
    body.end('data: [DONE]\n\n');
    await done;
    expect(Buffer.concat(seen).toString()).toBe('data: a\n\ndata: b\n\ndata: [DONE]\n\n');
  });

  it('takes everything buffered since the last read in one chunk', async () => {
    const body = new PassThrough();
    body.write('one');
    body.write('two');
    body.end('three');
    const seen: string[] = [];
    await readChunks(body, (b) => {
      seen.push(b.toString());
      return true;
    });
    expect(seen).toEqual(['onetwothree']);
  });

  it('stops reading while the handler waits, then goes on', async () => {
    const body = new PassThrough({ highWaterMark: 16 });
    let release!: () => void;
    const seen: string[] = [];
    const done = readChunks(body, (b) => {
      seen.push(b.toString());
      if (seen.length > 1) return true;
      return new Promise<void>((r) => {
        release = r;
      });
    });
    body.write('first');
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['first']);
    // Nothing is read while the handler waits: the body fills up and refuses writes.
    let accepted = true;
    for (let i = 0; i < 10 && accepted; i++) accepted = body.write('x'.repeat(8));
    expect(accepted).toBe(false);
    expect(seen).toHaveLength(1);
    release();
    body.end();
    await done;
    expect(seen.join('')).toBe(`first${'x'.repeat(seen.join('').length - 5)}`);
    expect(seen.length).toBeGreaterThan(1);
  });

  it('destroys the body and resolves when the handler says stop', async () => {
    const body = new PassThrough();
    const done = readChunks(body, () => false);
    body.write('a');
    await done;
    expect(body.destroyed).toBe(true);
  });

  it('rejects with the body error', async () => {
    const body = new PassThrough();
    const done = readChunks(body, () => true);
    body.destroy(new Error('socket hang up'));
    await expect(done).rejects.toThrow('socket hang up');
  });

  it('rejects when the body closes before its end', async () => {
    const body = new PassThrough();
    const done = readChunks(body, () => true);
    body.write('partial');
    await new Promise((r) => setImmediate(r));
    body.destroy();
    await expect(done).rejects.toThrow('closed before its end');
  });

  it('rejects when the handler waits on a promise that fails', async () => {
    const body = new PassThrough();
    const done = readChunks(body, () => Promise.reject(new Error('stalled')));
    body.write('a');
    await expect(done).rejects.toThrow('stalled');
  });

  it('resolves at once for an empty body, and for one already ended', async () => {
    await readChunks(Readable.from([], { objectMode: false }), () => true);
    const ended = new PassThrough();
    ended.end();
    ended.resume();
    await new Promise((r) => ended.once('end', r));
    await readChunks(ended, () => true);
  });
});
