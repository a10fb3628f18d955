import { z } from 'zod';
import { MAX_MODEL_ID, MAX_MODELS_PER_BACKEND, MAX_PRICE_PER_1M } from '../untrusted.js';
import { PROVIDER_ID_RE } from './frames.js';

/**
 * The coordinator's answers to device-flow pairing (PROTOCOL.md section 9), checked field by field before
 * any of it reaches the terminal (the code is shown in a box), the identity file (the provider id) or the
 * config (the prices). Unchecked, an escape sequence in `pair_code` went to the terminal raw, an unknown
 * `status` was taken for `active` and ended in a TypeError, and a 100 KB `provider_id` was written into
 * the identity file, which the next start then refused as too big for one.
 */

/** What the operator types: printable ASCII, no space, no control character. */
const PAIR_CODE_RE = /^[\x21-\x7e]{1,64}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const price = z.number().int().min(0).max(MAX_PRICE_PER_1M);

const issueAnswerSchema = z.object({
  pair_code: z.string().regex(PAIR_CODE_RE, 'must be 1 to 64 printable ASCII characters'),
  poll_token: z.string().min(1).max(4096),
  expires_at: z.string().max(64),
});

const modelConfigSchema = z.object({
  model_id: z
    .string()
    .min(1)
    .max(MAX_MODEL_ID)
    .refine((id) => !CONTROL.test(id), 'must hold no control character'),
  input_per_1m: price,
  output_per_1m: price,
  max_concurrent: z.number().int().min(1).max(256).optional(),
});

const pollAnswerSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('pending') }),
  z.object({ status: z.literal('expired') }),
  z.object({
    status: z.literal('active'),
    // Not used beyond the redactor: a coordinator that leaves it out still pairs.
    host_token: z.string().max(4096).optional(),
    provider_id: z.string().regex(PROVIDER_ID_RE, 'must be 1 to 128 characters of A-Z a-z 0-9 _ . : -'),
    model_config: z.array(modelConfigSchema).max(MAX_MODELS_PER_BACKEND).default([]),
  }),
]);

export type IssueAnswer = z.output<typeof issueAnswerSchema>;
export type PollAnswer = z.output<typeof pollAnswerSchema>;
export type ModelConfig = z.output<typeof modelConfigSchema>;

type Checked<T> = { ok: true; answer: T } | { ok: false; why: string };

/** `POST /v1/host/pair/issue`'s answer, checked, or what is wrong with it, as a clause. */
export function checkIssueAnswer(value: unknown): Checked<IssueAnswer> {
  return check(issueAnswerSchema, value);
}

/** `POST /v1/host/pair/poll`'s answer, checked, or what is wrong with it, as a clause. */
export function checkPollAnswer(value: unknown): Checked<PollAnswer> {
  return check(pollAnswerSchema, value);
}

/**
 * The clause ('a wrong "provider_id" (must be ...)') names the field, never its value: that may be
 * megabytes of escape sequences.
 */
function check<T extends z.ZodType>(schema: T, value: unknown): Checked<z.output<T>> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, answer: parsed.data };
  const issue = parsed.error.issues[0]!;
  const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  if (where === '') return { ok: false, why: 'no JSON object' };
  const rule = where === '.status' ? 'not "pending", "expired" or "active"' : issue.message;
  return { ok: false, why: `a wrong "${where.slice(1)}" (${rule})` };
}
