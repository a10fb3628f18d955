import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunkFrame, chunkFramePrefix } from '../protocol/chunk-frame.js';
import { parseInbound } from '../protocol/frames.js';
import { MAX_JOB_TOKENS } from '../untrusted.js';
import { ChatToAnthropic } from './anthropic.js';
import { MAX_PENDING, StreamScanner } from './stream-scan.js';

/**
 * Property-based fuzzing of what reads the coordinator's frames and the engines' streams (issue 14):
 * never throws, never holds more than a bound, relays bytes exactly.
 */

const JOB_ID = '2f1c6a4e-9b7d-4c1e-8f3a-5d2b7e9c1a04';
const tricky = fc.constantFrom(
  'type',
  'job',
  'job_cancel',
  'auth_ok',
  'auth_challenge',
  'constructor',
  '__proto__',
  'toString',
  'hasOwnProperty',
  'provider_id',
  'job_id',
  'model_id',
  'request',
  'format',
  'deadline_ms',
);
/** JSON values whose keys and strings lean on the frame's own names and the object prototype's. */
const value = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.double(),
    fc.integer(),
    fc.string(),
    tricky,
    fc.constant(JOB_ID),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(tricky, fc.string()), tie('v'), { maxKeys: 6 }),
  ),
})).v;

describe('parseInbound under fuzzing', () => {
  it('never throws, and whatever it answers is bounded', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          value.map((v) => JSON.stringify(v) ?? ''),
        ),
        (text) => {
          const r = parseInbound(text);
          if (!r.ok) {
            expect(r.reason.length).toBeLessThanOrEqual(600);
            expect((r.type ?? '').length).toBeLessThanOrEqual(64);
            expect((r.jobId ?? '').length).toBeLessThanOrEqual(64);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('never throws on mutated job frames, and every job it accepts is well formed', () => {
    const job = fc.record(
      {
        type: fc.oneof(fc.constant('job'), tricky),
        job_id: fc.oneof(fc.constant(JOB_ID), fc.string(), value),
        model_id: fc.oneof(fc.string({ maxLength: 600 }), value),
        request: value,
        format: value,
        deadline_ms: fc.oneof(fc.integer(), fc.double(), value),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(job, (frame) => {
        const r = parseInbound(JSON.stringify(frame));
        if (r.ok && r.frame.type === 'job') {
          expect(r.frame.job_id).toBe(JOB_ID);
          expect(r.frame.model_id.length).toBeGreaterThan(0);
          expect(r.frame.model_id.length).toBeLessThanOrEqual(512);
          expect(['openai', 'anthropic']).toContain(r.frame.format);
          expect(Number.isSafeInteger(r.frame.deadline_ms) && r.frame.deadline_ms > 0).toBe(true);
          expect(Object.getPrototypeOf(r.frame.request)).toBe(Object.prototype);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

/** An engine's stream: real event lines, usage with any numbers, garbage, comments, over-long lines. */
const line = fc.oneof(
  fc.constant('data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}'),
  fc.constant('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'),
  fc.constant('data: [DONE]'),
  fc.constant(': keep-alive'),
  fc.constant('event: error'),
  fc.constant(''),
  fc
    .tuple(
      fc.oneof(fc.integer(), fc.double(), fc.constant(1e308)),
      fc.oneof(fc.integer(), fc.constant(2 ** 60)),
    )
    .map(
      ([a, b]) =>
        `data: {"choices":[],"usage":{"prompt_tokens":${JSON.stringify(a)},"completion_tokens":${b}}}`,
    ),
  fc.string(),
  fc.json().map((j) => `data: ${j}`),
);
const stream = fc
  .tuple(fc.array(line, { maxLength: 30 }), fc.boolean(), fc.nat({ max: 3 * MAX_PENDING }))
  .map(([lines, long, n]) =>
    Buffer.from(`${lines.join('\n')}${long ? `\ndata: {"x":"${'a'.repeat(n)}` : ''}\n`),
  );

/** Cut points inside a buffer, sorted. */
function cuts(buf: Buffer) {
  return fc
    .uniqueArray(fc.nat({ max: Math.max(0, buf.length - 1) }), { maxLength: 40 })
    .map((c) => c.sort((a, b) => a - b));
}

function pieces(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(start, c));
    start = c;
  }
  return out;
}

describe('the stream scanner under fuzzing', () => {
  it('never throws, holds at most its bound, counts tokens within range, and reads the same whatever the cuts', () => {
    fc.assert(
      fc.property(
        stream.chain((buf) => fc.tuple(fc.constant(buf), cuts(buf))),
        ([buf, at]) => {
          const whole = new StreamScanner();
          whole.push(buf);
          const split = new StreamScanner();
          for (const p of pieces(buf, at)) {
            split.push(p);
            expect(split.held).toBeLessThanOrEqual(MAX_PENDING);
          }
          const a = whole.end();
          const b = split.end();
          expect(b).toEqual(a);
          for (const n of [a.inputTokens, a.outputTokens]) {
            expect(Number.isSafeInteger(n) && n >= 0 && n <= MAX_JOB_TOKENS).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('relays bytes exactly: job_chunk frames decode to the engine bytes, for any cut and any view', () => {
    const prefix = chunkFramePrefix(JOB_ID);
    fc.assert(
      fc.property(
        fc
          .uint8Array({ maxLength: 4096 })
          .chain((u) => fc.tuple(fc.constant(Buffer.from(u)), cuts(Buffer.from(u)))),
        ([buf, at]) => {
          // A view into a larger buffer, as undici hands over.
          const backing = Buffer.concat([Buffer.from('xx'), buf, Buffer.from('yy')]);
          const view = backing.subarray(2, 2 + buf.length);
          const decoded = pieces(view, at).map((p) => {
            const f = JSON.parse(chunkFrame(prefix, p).toString('utf8')) as {
              type: string;
              job_id: string;
              data: string;
            };
            expect(f.job_id).toBe(JOB_ID);
            return Buffer.from(f.data, 'base64');
          });
          expect(Buffer.concat(decoded).equals(buf)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('the Anthropic translation under fuzzing', () => {
  it('never throws and its output is a Messages event stream, whatever the cuts', () => {
    fc.assert(
      fc.property(
        stream.chain((buf) => fc.tuple(fc.constant(buf), cuts(buf))),
        ([buf, at]) => {
          const t = new ChatToAnthropic('m');
          const out: Buffer[] = [];
          t.on('data', (d: Buffer) => out.push(d));
          for (const p of pieces(buf, at)) t.write(p);
          t.end();
          for (const ev of Buffer.concat(out).toString('utf8').split('\n\n').filter(Boolean)) {
            expect(ev).toMatch(/^event: [a-z_]+\ndata: \{/);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
