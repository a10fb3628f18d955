import { pipeline } from 'node:stream';
import type { Backend, UpstreamResponse } from '../backend/backend.js';
import { isUsepodError } from '../errors.js';
import { jobChannels } from '../observability/diagnostics.js';
import type { Logger } from '../observability/log.js';
import type { AgentHooks } from '../plugins/hooks.js';
import type { JobFrame } from '../protocol/frames.js';
import { anthropicToChat, ChatToAnthropic } from './anthropic.js';
import { abortable, type RunningJob } from './job.js';

/**
 * Opening a job's upstream request: the `onJob` taps' choice of backend, failover to the next backend
 * when one cannot be reached (nothing was relayed yet), the request changes of PROTOCOL.md 5.2, and the
 * Anthropic translation where an engine has no `/v1/messages`.
 */

export interface RouterView {
  /** Healthy backends serving the model, best first. */
  candidates(model: string): Backend[];
  /** Called when a backend failed to connect, so discovery can re-probe it. */
  reportFailure(backend: Backend): void;
  /** Jobs in flight per backend, maintained by the executor. */
  adjustInFlight(backend: Backend, delta: number): void;
  /** Whether the backend serves Anthropic Messages natively for this model (else the agent translates). */
  speaksAnthropic(backend: Backend, model: string): boolean;
  /** Why the model's every healthy backend is under a scoped hold (the job is refused), or undefined. */
  heldFor?(model: string): string | undefined;
}

/**
 * The request changes of PROTOCOL.md 5.2. `model` is always the job's `model_id`: a request's own would
 * run any model the engine has (an Ollama cloud model on the operator's account, a model outside the
 * allow-list) at the advertised model's price. Usage is always asked for, whatever `stream_options` the
 * client sent, so token counts, the budget and billing never depend on the client.
 */
export function prepareRequest(frame: JobFrame): Record<string, unknown> {
  const body: Record<string, unknown> = { ...frame.request, stream: true, model: frame.model_id };
  if (frame.format === 'openai') {
    const own = body.stream_options;
    body.stream_options =
      own && typeof own === 'object' && !Array.isArray(own)
        ? { ...(own as Record<string, unknown>), include_usage: true }
        : { include_usage: true };
  }
  return body;
}

export const STREAM_TYPES =
  /^(text\/event-stream|application\/x-ndjson|application\/jsonl|application\/ndjson)/i;

export interface OpenerContext {
  hooks: AgentHooks;
  router: RouterView;
  log: Logger;
}

/** The backends to try, the `onJob` taps' choice first. */
export async function route(ctx: OpenerContext, job: RunningJob, candidates: Backend[]): Promise<Backend[]> {
  // A tap that never answers must not hold the job past its deadline or a cancel.
  const handle = await abortable(job.abort, ctx.hooks.onJob.promise({ frame: job.frame, candidates }));
  const first = handle?.backend ?? candidates[0]!;
  return [first, ...candidates.filter((b) => b !== first)];
}

/** Opens the upstream request on the first backend of the route that can be reached. */
export async function open(
  ctx: OpenerContext,
  job: RunningJob,
  backends: Backend[],
): Promise<UpstreamResponse> {
  const { frame } = job;
  let lastErr: unknown;
  for (const backend of backends) {
    job.backend = backend;
    ctx.router.adjustInFlight(backend, 1);
    // Anthropic jobs go to /v1/messages where the engine has it, else through chat completions and back.
    const translate = frame.format === 'anthropic' && !ctx.router.speaksAnthropic(backend, frame.model_id);
    try {
      const attempt = attemptOn(job, backend, translate);
      // Chained only where it can apply: each link is one more turn before the first byte.
      if (frame.format !== 'anthropic' || translate) return await attempt;
      return await attempt.catch((err: unknown) => {
        // An engine thought to serve /v1/messages that has no such route: translate instead.
        if (!isUsepodError(err, 'USEPOD_BACKEND_NO_ROUTE') || job.abort.signal.aborted) throw err;
        return attemptOn(job, backend, true);
      });
    } catch (err) {
      ctx.router.adjustInFlight(backend, -1);
      lastErr = err;
      job.failedOn = backend;
      // Unreachable: the engine began no answer, not one byte (http.ts): the next one may take the job.
      if (job.abort.signal.aborted || !isUsepodError(err, 'USEPOD_BACKEND_UNREACHABLE')) break;
      ctx.router.reportFailure(backend);
      ctx.log.warn('backend unreachable, trying the next one', {
        job_id: job.frame.job_id,
        backend: backend.label,
      });
    }
  }
  job.backend = undefined;
  throw lastErr;
}

function attemptOn(job: RunningJob, backend: Backend, translate: boolean): Promise<UpstreamResponse> {
  const { frame } = job;
  // A plugin that ignores the signal must not hold the job past its deadline or a cancel.
  const opened = abortable(
    job.abort,
    backend.stream({
      model: frame.model_id,
      body: translate ? anthropicToChat(frame.request, frame.model_id) : prepareRequest(frame),
      format: translate ? 'openai' : frame.format,
      signal: job.abort.signal,
      // Passed explicitly: `sendRequest()` listens on the relay, not on the signal (decision 0004).
      abort: job.abort,
    }),
  );
  if (jobChannels.request.hasSubscribers) {
    jobChannels.request.publish({ jobId: frame.job_id, backend: backend.label });
  }
  if (!translate) return opened;
  return opened.then((res) => {
    if (res.contentType && !STREAM_TYPES.test(res.contentType)) return res;
    const out = new ChatToAnthropic(frame.model_id);
    pipeline(res.body, out, () => {});
    return { body: out, contentType: 'text/event-stream' };
  });
}
