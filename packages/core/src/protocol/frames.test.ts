import { describe, expect, it } from 'vitest';
import { checkJob, checkWithSchema, jobSchema, parseInbound } from './frames.js';

const ID = '3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c';
const valid = { type: 'job', job_id: ID, model_id: 'Qwen/Qwen3-14B', request: { messages: [] } };

// Every rule of jobSchema, broken one at a time, plus the shapes JSON can produce around each.
const corpus: Record<string, unknown>[] = [
  valid,
  { ...valid, format: 'anthropic', deadline_ms: 1 },
  { ...valid, format: 'openai', deadline_ms: 24 * 3600 * 1000, extra: 'dropped' },
  { ...valid, job_id: undefined },
  { ...valid, job_id: 42 },
  { ...valid, job_id: null },
  { ...valid, job_id: 'not-a-uuid' },
  { ...valid, job_id: `${ID}x` },
  { ...valid, job_id: ID.toUpperCase() },
  { ...valid, model_id: undefined },
  { ...valid, model_id: '' },
  { ...valid, model_id: 'm'.repeat(512) },
  { ...valid, model_id: 'm'.repeat(513) },
  { ...valid, model_id: ['a'] },
  { ...valid, request: undefined },
  { ...valid, request: 'text' },
  { ...valid, request: null },
  { ...valid, request: [] },
  { ...valid, request: 7 },
  { ...valid, format: null },
  { ...valid, format: 'gemini' },
  { ...valid, format: 1 },
  { ...valid, deadline_ms: null },
  { ...valid, deadline_ms: '100' },
  { ...valid, deadline_ms: 1.5 },
  { ...valid, deadline_ms: 0 },
  { ...valid, deadline_ms: -1 },
  { ...valid, deadline_ms: 24 * 3600 * 1000 + 1 },
  { ...valid, deadline_ms: Number.POSITIVE_INFINITY },
  { ...valid, deadline_ms: Number.NEGATIVE_INFINITY },
  { ...valid, job_id: 'bad', model_id: '' },
  { ...valid, model_id: '', request: 'x', deadline_ms: -5 },
];

describe('job frame checks', () => {
  it('answers exactly as the zod schema does, reason and all', () => {
    for (const frame of corpus) {
      expect(checkJob(frame), JSON.stringify(frame)).toEqual(checkWithSchema(jobSchema, 'job', frame));
    }
  });

  it('is what parseInbound uses for job frames, with defaults applied', () => {
    expect(parseInbound(JSON.stringify(valid))).toEqual({
      ok: true,
      frame: { ...valid, format: 'openai', deadline_ms: 60_000 },
    });
    // JSON's overflowing numbers become Infinity, which is not a deadline: the default applies (5.1).
    const huge = parseInbound(
      `{"type":"job","job_id":"${ID}","model_id":"m","request":{},"deadline_ms":1e400}`,
    );
    expect(huge).toMatchObject({ ok: true, frame: { deadline_ms: 60_000 } });
  });

  it('takes the defaults of PROTOCOL.md 5.1 for a format or deadline that is null or unrecognised (0.3.x)', () => {
    const check = (extra: Record<string, unknown>) => {
      const r = parseInbound(JSON.stringify({ ...valid, ...extra }));
      if (!r.ok || r.frame.type !== 'job') throw new Error(JSON.stringify(r));
      return [r.frame.format, r.frame.deadline_ms];
    };
    expect(check({ format: null, deadline_ms: null })).toEqual(['openai', 60_000]);
    expect(check({ format: 'gemini', deadline_ms: '100' })).toEqual(['openai', 60_000]);
    expect(check({ format: 7, deadline_ms: -1 })).toEqual(['openai', 60_000]);
    expect(check({ format: 'anthropic', deadline_ms: 1.5 })).toEqual(['anthropic', 60_000]);
    expect(check({ deadline_ms: 0 })).toEqual(['openai', 60_000]);
    expect(check({ deadline_ms: 5000 })).toEqual(['openai', 5000]);
    expect(check({ deadline_ms: 1e12 })).toEqual(['openai', 24 * 3600 * 1000]);
  });
});
