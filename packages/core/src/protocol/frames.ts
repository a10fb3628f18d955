import { z } from 'zod';

/**
 * Every frame of PROTOCOL.md, as types, and the checks applied to inbound ones.
 * Inbound frames are type-checked field by field; anything that fails is
 * reported as a reason string and the caller decides (drop, or fail the handshake).
 */

export const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ---- inbound (coordinator -> agent) ----

export const authChallengeSchema = z.object({
  type: z.literal('auth_challenge'),
  nonce: z.string().min(1).max(4096).regex(BASE64_RE, 'nonce must be standard base64'),
});
/**
 * PROTOCOL.md 2: at most 128 characters of `[A-Za-z0-9_.:-]`. The id is written into the line-based
 * identity file, so anything else (a newline above all) would let a coordinator rewrite the key.
 */
export const PROVIDER_ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
/** `provider_id` may be absent: the stored one is kept, as in 0.3.x. */
export const authOkSchema = z.object({
  type: z.literal('auth_ok'),
  provider_id: z
    .string()
    .regex(PROVIDER_ID_RE, 'provider_id must be 1 to 128 characters of A-Z a-z 0-9 _ . : -')
    .optional(),
});
export const authFailedSchema = z.object({
  type: z.literal('auth_failed'),
  reason: z.string().max(4096).default(''),
});

/** `setTimeout` fires at once past 2^31 - 1 ms; a day is longer than any job. */
const MAX_DEADLINE_MS = 24 * 3600 * 1000;
const DEFAULT_DEADLINE_MS = 60_000;

/** PROTOCOL.md 5.1, as 0.3.x reads it: only "anthropic" is Anthropic; anything else, null included, is OpenAI. */
function formatOf(v: unknown): 'openai' | 'anthropic' {
  return v === 'anthropic' ? 'anthropic' : 'openai';
}

/** PROTOCOL.md 5.1: a positive integer (at most a day), else the 60 s default (0.3.x `as_u64().unwrap_or(60000)`). */
function deadlineOf(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0
    ? Math.min(v, MAX_DEADLINE_MS)
    : DEFAULT_DEADLINE_MS;
}

export const jobSchema = z.object({
  type: z.literal('job'),
  job_id: z.string().regex(UUID_RE, 'job_id must be a UUID'),
  model_id: z.string().min(1).max(512),
  request: z.record(z.string(), z.unknown()),
  format: z.unknown().optional().transform(formatOf),
  deadline_ms: z.unknown().optional().transform(deadlineOf),
});
export const jobCancelSchema = z.object({
  type: z.literal('job_cancel'),
  job_id: z.string().min(1).max(256),
});

export type AuthChallengeFrame = z.output<typeof authChallengeSchema>;
export type AuthOkFrame = z.output<typeof authOkSchema>;
export type AuthFailedFrame = z.output<typeof authFailedSchema>;
export type JobFrame = z.output<typeof jobSchema>;
export type JobCancelFrame = z.output<typeof jobCancelSchema>;

// ---- outbound (agent -> coordinator) ----

export interface AuthResponseFrame {
  type: 'auth_response';
  pubkey: string;
  signature: string;
  agent_version: string;
  enrollment_code?: string;
  [extra: string]: unknown;
}

export interface CapabilityModel {
  model_id: string;
  input_per_1m: number;
  output_per_1m: number;
  max_concurrent: number;
  backend: string;
  context_window?: number;
}

export interface CapabilitiesFrame {
  type: 'capabilities';
  models: CapabilityModel[];
  limits: { max_concurrent_total: number; max_tokens_per_minute: number | null };
  metadata: { agent_version: string; [extra: string]: unknown };
}

export interface HeartbeatFrame {
  type: 'heartbeat';
  queue_depth: number;
  tokens_per_sec_p50: number;
  p50_latency_ms: number;
  p95_latency_ms: number;
  error_rate_60s: number;
  last_error_at: string | null;
  last_error_code: string | null;
}

export interface JobDoneFrame {
  type: 'job_done';
  job_id: string;
  tokens: { input: number; output: number; input_tokens: number; output_tokens: number };
  duration_ms: number;
}

export interface JobErrorFrame {
  type: 'job_error';
  job_id: string;
  error_code: string;
  message: string;
  tokens_emitted: number;
}

export type InboundFrame = AuthChallengeFrame | AuthOkFrame | AuthFailedFrame | JobFrame | JobCancelFrame;

export type Inbound =
  | { ok: true; frame: InboundFrame }
  | { ok: false; reason: string; type?: string; jobId?: string };

/** A Map, not an object: a `type` of `constructor` or `__proto__` must be just an unknown type (PROTOCOL.md 1). */
const SCHEMAS = new Map<string, z.ZodType>([
  ['auth_challenge', authChallengeSchema],
  ['auth_ok', authOkSchema],
  ['auth_failed', authFailedSchema],
  ['job_cancel', jobCancelSchema],
]);

/** Parses one inbound text frame. Never throws. */
export function parseInbound(text: string): Inbound {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    return { ok: false, reason: 'not a JSON object' };
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') return { ok: false, reason: 'no string "type"' };
  if (type === 'job') return checkJob(value as Record<string, unknown>);
  const schema = SCHEMAS.get(type);
  if (!schema)
    return {
      ok: false,
      reason: `unknown type ${JSON.stringify(type.slice(0, 64))}`,
      type: type.slice(0, 64),
    };
  return checkWithSchema(schema, type, value);
}

/** Checks a decoded frame against its zod schema; the reason names the first failing field. */
export function checkWithSchema(schema: z.ZodType, type: string, value: unknown): Inbound {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const reason = `${issue.path.join('.') || type}: ${issue.message}`;
    return rejected(type, reason, (value as { job_id?: unknown }).job_id);
  }
  return { ok: true, frame: parsed.data as InboundFrame };
}

/** A frame that failed its check, with its job id (bounded) when it has one, for the log line. */
function rejected(type: string, reason: string, jobId: unknown): Inbound {
  return {
    ok: false,
    type,
    reason,
    ...(typeof jobId === 'string' ? { jobId: jobId.slice(0, 64) } : {}),
  };
}

/**
 * `job` frames are checked by hand, with the same rules and messages as `jobSchema`: they are on every
 * job's way to its engine, where zod's generic code cost about 0.13 ms on the cold caches an idle
 * agent wakes up with (decision 0004). `frames.test.ts` holds the two to the same answers.
 */
export function checkJob(v: Record<string, unknown>): Inbound {
  const jobId = v.job_id;
  const fail = (path: string, message: string): Inbound => rejected('job', `${path}: ${message}`, jobId);
  if (typeof jobId !== 'string') return fail('job_id', expected('string', jobId));
  if (!UUID_RE.test(jobId)) return fail('job_id', 'job_id must be a UUID');
  const model = v.model_id;
  if (typeof model !== 'string') return fail('model_id', expected('string', model));
  if (model.length < 1) return fail('model_id', 'Too small: expected string to have >=1 characters');
  if (model.length > 512) return fail('model_id', 'Too big: expected string to have <=512 characters');
  const request = v.request;
  if (typeof request !== 'object' || request === null || Array.isArray(request))
    return fail('request', expected('record', request));
  const format = formatOf(v.format);
  const deadline = deadlineOf(v.deadline_ms);
  return {
    ok: true,
    frame: {
      type: 'job',
      job_id: jobId,
      model_id: model,
      request: request as Record<string, unknown>,
      format,
      deadline_ms: deadline,
    },
  };
}

function expected(kind: string, got: unknown): string {
  const received =
    got === undefined ? 'undefined' : got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got;
  return `Invalid input: expected ${kind}, received ${received}`;
}
