import { describe, expect, it } from 'vitest';
import { formatLine } from '../observability/log.js';
import type { JobOutcome } from '../plugins/hooks.js';
import { JOB_LINE_COLUMNS, jobEndLine } from './job.js';

const outcome = (o: Partial<JobOutcome>): JobOutcome => ({
  jobId: '2f1c9a3e-7b4d-4c1a-9e2f-0a1b2c3d4e5f',
  model: 'Qwen/Qwen3-14B',
  backend: 'vllm@127.0.0.1:8000',
  outcome: 'done',
  inputTokens: 17,
  outputTokens: 230,
  bytes: 4096,
  durationMs: 2412,
  firstByteMs: 80,
  ...o,
});

const line = (o: JobOutcome) => {
  const { msg, fields } = jobEndLine(o);
  return formatLine(o.outcome === 'error' ? 'warn' : 'info', 'job', msg, fields);
};

describe('the per-job log line (issue 17: 120 columns at info)', () => {
  it('says the usual job in full', () => {
    expect(line(outcome({}))).toMatch(
      /^\S{24} INFO {2}job done job=2f1c9a3e model=Qwen\/Qwen3-14B via=vllm@127\.0\.0\.1:8000 tok=17\+230 ms=2412$/,
    );
  });

  it('fits long model and backend names at a full context and a ten-minute job, keeping the names’ ends', () => {
    const long = outcome({
      model: 'organisation-with-a-long-name/Meta-Llama-3.1-405B-Instruct-FP8-dynamic-quantised',
      backend: 'openai-compatible@inference.internal.example.com:8443',
      inputTokens: 131_072,
      outputTokens: 32_768,
      durationMs: 600_000,
    });
    for (const o of ['done', 'cancelled'] as const) {
      const text = line({ ...long, outcome: o });
      expect(text.length).toBeLessThanOrEqual(JOB_LINE_COLUMNS);
      expect(text).toMatch(/ model=…[^ ]*-quantised via=open…443 tok=131072\+32768 ms=600000$/);
    }
  });

  it('names a failure by its error code, at warn, within the same width', () => {
    const text = line(
      outcome({
        model: 'organisation-with-a-long-name/Meta-Llama-3.1-405B-Instruct-FP8-dynamic-quantised',
        outcome: 'error',
        errorCode: 'backend_unavailable',
        inputTokens: 0,
        outputTokens: 0,
        durationMs: 30_000,
      }),
    );
    expect(text).toMatch(/ WARN {2}job backend_unavailable job=2f1c9a3e model=…/);
    expect(text.length).toBeLessThanOrEqual(JOB_LINE_COLUMNS);
  });

  it('measures a name that must be quoted as printed', () => {
    const text = line(outcome({ model: `a model with "quotes" and spaces ${'x'.repeat(80)}` }));
    expect(text.length).toBeLessThanOrEqual(JOB_LINE_COLUMNS);
  });
});
