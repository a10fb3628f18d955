import type { Readable } from 'node:stream';
import type { Backend } from '../backend/backend.js';
import { errorMessage, isUsepodError, type JobErrorCode, jobErrorCodeOf, UsepodError } from '../errors.js';
import { formatValue, type Logger } from '../observability/log.js';
import type { JobOutcome } from '../plugins/hooks.js';
import type { JobFrame } from '../protocol/frames.js';
import type { AbortRelay } from './abort-relay.js';
import { discard } from './read-chunks.js';

/**
 * One job as the executor runs it, why it may be aborted, and how a failure becomes the job error of
 * PROTOCOL.md 5.4: by the error's code, never by its message text.
 */

/** Where a job's frames go: the session, seen from the executor. */
export interface JobSink {
  /** Sends one text frame (a `job_chunk` as its UTF-8 bytes); false when the session is gone. */
  send(frame: string | Buffer): boolean;
  /** True while the outbound buffer is above its high-water mark. */
  readonly congested: boolean;
  /** Resolves when the buffer is back under its low-water mark (or the session ended). */
  drained(): Promise<void>;
}

/** Why a job's upstream request was aborted. */
export type AbortReason = 'cancel' | 'deadline' | 'session' | 'shutdown' | 'stalled';

export class JobAbort extends Error {
  constructor(readonly reason: AbortReason) {
    super(reason);
  }
}

/** One instance per reason, made once: every job ends with an abort, and an Error's stack costs. */
export const ABORTS: Record<AbortReason, JobAbort> = {
  cancel: new JobAbort('cancel'),
  deadline: new JobAbort('deadline'),
  session: new JobAbort('session'),
  shutdown: new JobAbort('shutdown'),
  stalled: new JobAbort('stalled'),
};

export interface RunningJob {
  frame: JobFrame;
  /** The job's abort: its signal goes to the plugin, the relay to the HTTP client, reactions to us (abort-relay.ts). */
  abort: AbortRelay;
  receivedAt: number;
  sink: JobSink;
  backend: Backend | undefined;
  /** The backend whose attempt failed last, when none could open the request (its failure counts there). */
  failedOn: Backend | undefined;
  bytes: number;
  /** The stream scan's figures so far, once the stream is read (`running()`). */
  scan: { readonly events: number } | undefined;
}

/** Settles with the promise, or rejects with the job's abort reason as soon as it is aborted. */
export function abortable<T>(abort: AbortRelay, p: Promise<T>): Promise<T> {
  const { signal } = abort;
  // A response that arrives after all is closed at once.
  const dispose = (r: unknown) => {
    const body = (r as { body?: Readable } | undefined)?.body;
    if (body) discard(body);
  };
  if (signal.aborted) {
    p.then(dispose, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      p.then(dispose, () => {});
    };
    abort.react(onAbort);
    p.then(
      (v) => {
        abort.forget(onAbort);
        resolve(v);
      },
      (e: unknown) => {
        abort.forget(onAbort);
        reject(e);
      },
    );
  });
}

export function abortReason(signal: AbortSignal, err: unknown): AbortReason | undefined {
  if (err instanceof JobAbort) return err.reason;
  if (signal.aborted && signal.reason instanceof JobAbort) return signal.reason.reason;
  return undefined;
}

export function describeFailure(
  reason: AbortReason | undefined,
  err: unknown,
  deadlineMs: number,
): [JobErrorCode, string] {
  // Mapped by code, never by message text (issue 16): the wire code is the error code's.
  switch (reason) {
    case 'deadline':
      return describeFailure(
        undefined,
        new UsepodError('USEPOD_BACKEND_TIMEOUT', `backend exceeded deadline_ms (${deadlineMs} ms)`),
        deadlineMs,
      );
    case 'shutdown':
      return ['internal', 'agent shut down before the job finished'];
    case 'stalled':
      return ['internal', 'job stalled: the coordinator did not read its output in time'];
    default:
      break;
  }
  if (isUsepodError(err)) return [jobErrorCodeOf(err), err.message];
  // What the HTTP client or a plugin threw while the body was read: the stream failed.
  return describeFailure(
    undefined,
    new UsepodError('USEPOD_BACKEND_STREAM', `backend stream failed: ${errorMessage(err)}`),
    deadlineMs,
  );
}

/** The per-job info line fits this many columns (issue 17), timestamp, level and area included. */
export const JOB_LINE_COLUMNS = 120;
/** `2026-11-27T03:05:09.310Z INFO  job `: what the text format puts before the message. */
const JOB_LINE_PREFIX = 24 + 1 + 5 + 1 + 'job'.length + 1;
/** A model or backend name is never shortened below this (the line may then run past the budget). */
const MIN_NAME = 8;

/**
 * A model keeps its end (`…Llama-3.1-8B-Instruct`: what tells models of one family apart); a backend its
 * both ends (`openai…:8443`: the kind and the port).
 */
function shorten(name: string, columns: number, keep: 'end' | 'ends'): string {
  if (name.length <= columns) return name;
  if (keep === 'end') return `…${name.slice(name.length - columns + 1)}`;
  const head = Math.ceil((columns - 1) / 2);
  return `${name.slice(0, head)}…${name.slice(name.length - (columns - 1 - head))}`;
}

/**
 * The operator's line for one job: its outcome (`done`, `cancelled`, or the error code of a failure) as the
 * message, an 8-character job id (the full id and every figure are on the debug line), tokens as
 * `in+out`; the backend's name, then the model's, shortened (shorten()) to fit JOB_LINE_COLUMNS.
 */
export function jobEndLine(o: JobOutcome): { msg: string; fields: Record<string, string | number> } {
  const msg = o.outcome === 'error' ? (o.errorCode ?? 'failed') : o.outcome;
  const fields: Record<string, string | number> = { job: o.jobId.slice(0, 8), model: o.model };
  if (o.backend !== undefined) fields.via = o.backend;
  fields.tok = `${o.inputTokens}+${o.outputTokens}`;
  fields.ms = Math.round(o.durationMs);
  const width = () =>
    JOB_LINE_PREFIX +
    msg.length +
    Object.entries(fields).reduce((n, [k, v]) => n + 2 + k.length + formatValue(v).length, 0);
  for (const key of ['via', 'model'] as const) {
    const over = width() - JOB_LINE_COLUMNS;
    const value = fields[key];
    if (over <= 0 || typeof value !== 'string') continue;
    fields[key] = shorten(value, Math.max(MIN_NAME, value.length - over), key === 'model' ? 'end' : 'ends');
  }
  return { msg, fields };
}

/** A job's end in the log: one line, and a debug line with every figure. */
export function announceEnd(outcome: JobOutcome, log: Logger): void {
  const { msg, fields } = jobEndLine(outcome);
  if (outcome.outcome === 'error') log.warn(msg, fields);
  else log.info(msg, fields);
  log.debug('job record', {
    job_id: outcome.jobId,
    model: outcome.model,
    backend: outcome.backend,
    outcome: outcome.outcome,
    error_code: outcome.errorCode,
    input_tokens: outcome.inputTokens,
    output_tokens: outcome.outputTokens,
    bytes: outcome.bytes,
    first_byte_ms: outcome.firstByteMs,
    ms: outcome.durationMs,
  });
}

/**
 * Waits for a congested sink to drain: ends early when the job is aborted, and calls `onStall` (which
 * aborts the job) when nothing could be delivered for `stallMs`.
 */
export async function waitForSink(job: RunningJob, stallMs: number, onStall: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let ended: (() => void) | undefined;
  // The body's reaction (close it) stays registered; an abort now also ends the wait.
  const stalledOrAborted = new Promise<void>((resolve) => {
    timer = setTimeout(onStall, stallMs);
    ended = resolve;
    job.abort.react(resolve);
  });
  try {
    await Promise.race([job.sink.drained(), stalledOrAborted]);
  } finally {
    clearTimeout(timer);
    job.abort.forget(ended!);
  }
}
