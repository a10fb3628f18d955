import { pipeline, type Readable } from 'node:stream';
import type { Backend, UpstreamResponse } from '../backend/backend.js';
import { engineErrorMessage, readText } from '../backend/http.js';
import { errorMessage, isUsepodError, type JobErrorCode, jobErrorCodeOf, UsepodError } from '../errors.js';
import { jobChannels } from '../observability/diagnostics.js';
import type { Logger } from '../observability/log.js';
import type { JobStats } from '../observability/stats.js';
import { type AgentHooks, type JobOutcome, runJobEndHooks } from '../plugins/hooks.js';
import { chunkFrame, chunkFramePrefix } from '../protocol/chunk-frame.js';
import type { JobDoneFrame, JobErrorFrame, JobFrame } from '../protocol/frames.js';
import { engineText } from '../untrusted.js';
import { AbortRelay } from './abort-relay.js';
import { anthropicToChat, ChatToAnthropic } from './anthropic.js';
import { discard, guardBody, readChunks } from './read-chunks.js';
import { StreamScanner } from './stream-scan.js';
import { reservationFor, type TokenBudget } from './token-budget.js';

/**
 * Owns the jobs: capacity, routing, the request changes of PROTOCOL.md 5.2,
 * the byte-for-byte relay (5.3), terminal frames (5.4), cancel (5.5) and
 * deadlines (5.6). It writes frames to a `JobSink` and never reads the socket.
 */

export interface JobSink {
  /** Sends one text frame; false when the session is gone. */
  send(frame: string): boolean;
  /** True while the outbound buffer is above its high-water mark. */
  readonly congested: boolean;
  /** Resolves when the buffer is back under its low-water mark (or the session ended). */
  drained(): Promise<void>;
}

/** Why a job's upstream request was aborted. */
export type AbortReason = 'cancel' | 'deadline' | 'session' | 'shutdown' | 'stalled';

class JobAbort extends Error {
  constructor(readonly reason: AbortReason) {
    super(reason);
  }
}

/** One instance per reason, made once: every job ends with an abort, and an Error's stack costs. */
const ABORTS: Record<AbortReason, JobAbort> = {
  cancel: new JobAbort('cancel'),
  deadline: new JobAbort('deadline'),
  session: new JobAbort('session'),
  shutdown: new JobAbort('shutdown'),
  stalled: new JobAbort('stalled'),
};

interface RunningJob {
  frame: JobFrame;
  /** The job's abort: its signal goes to the plugin, the relay to undici, reactions to us (abort-relay.ts). */
  abort: AbortRelay;
  receivedAt: number;
  sink: JobSink;
  backend: Backend | undefined;
  bytes: number;
}

export interface RouterView {
  /** Healthy backends serving the model, best first. */
  candidates(model: string): Backend[];
  /** Called when a backend failed to connect, so discovery can re-probe it. */
  reportFailure(backend: Backend): void;
  /** Jobs in flight per backend, maintained by the executor. */
  adjustInFlight(backend: Backend, delta: number): void;
  /** Whether the backend serves Anthropic Messages natively for this model (else the agent translates). */
  speaksAnthropic(backend: Backend, model: string): boolean;
}

export interface ExecutorOptions {
  hooks: AgentHooks;
  log: Logger;
  stats: JobStats;
  router: RouterView;
  maxConcurrent: number;
  /** Refuse request bodies larger than this many bytes. */
  maxRequestBytes: number;
  /** A job whose output cannot be delivered for this long ends with `job_error`. */
  stallTimeoutMs?: number;
  /** `limits.max_tokens_per_minute`. */
  budget?: TokenBudget;
  now?: () => number;
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

const STREAM_TYPES = /^(text\/event-stream|application\/x-ndjson|application\/jsonl|application\/ndjson)/i;

export class Executor {
  readonly #opts: ExecutorOptions;
  readonly #jobs = new Map<string, RunningJob>();
  readonly #now: () => number;
  #accepting = true;
  #idleWaiters: (() => void)[] = [];
  /**
   * The next job's abort, made while the previous one waits on its engine: an AbortController and its
   * relay cost about 60 µs on an agent woken from idle, on every job's way to its engine (decision 0004).
   */
  #spareAbort: AbortRelay | undefined;

  constructor(opts: ExecutorOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  get inFlight(): number {
    return this.#jobs.size;
  }

  get maxConcurrent(): number {
    return this.#opts.maxConcurrent;
  }

  /** New jobs are refused with `out_of_capacity` from now on (graceful drain). */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Resolves once no job is in flight. */
  idle(): Promise<void> {
    if (this.#jobs.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Starts a job; returns at once. */
  accept(frame: JobFrame, sink: JobSink, frameBytes = 0): void {
    const receivedAt = this.#now();
    if (this.#jobs.has(frame.job_id)) {
      this.#opts.log.warn('duplicate job_id ignored', { job_id: frame.job_id });
      return;
    }
    // After the duplicate check: every job received on the channel ends on it exactly once.
    if (jobChannels.received.hasSubscribers) {
      jobChannels.received.publish({ jobId: frame.job_id, model: frame.model_id, format: frame.format });
    }
    if (!this.#accepting || this.#jobs.size >= this.#opts.maxConcurrent) {
      this.#reject(
        frame,
        sink,
        'out_of_capacity',
        `agent is at max_concurrent (${this.#opts.maxConcurrent})`,
        receivedAt,
      );
      return;
    }
    if (frameBytes > this.#opts.maxRequestBytes) {
      this.#reject(
        frame,
        sink,
        'internal',
        `request body exceeds ${this.#opts.maxRequestBytes} bytes`,
        receivedAt,
      );
      return;
    }
    const budget = this.#opts.budget;
    if (budget && !budget.tryReserve(frame.job_id, reservationFor(frame, frameBytes))) {
      const message = `agent is at max_tokens_per_minute (${budget.limit}); try again shortly`;
      this.#reject(frame, sink, 'out_of_capacity', message, receivedAt);
      return;
    }
    const job: RunningJob = {
      frame,
      abort: this.#spareAbort ?? new AbortRelay(),
      receivedAt,
      sink,
      backend: undefined,
      bytes: 0,
    };
    this.#spareAbort = undefined;
    this.#jobs.set(frame.job_id, job);
    void this.#run(job);
  }

  /**
   * A job frame with a valid `job_id` that cannot run (no `model_id`, no `request`): PROTOCOL.md 5.1 says
   * it never goes unanswered, so the coordinator does not wait for a job the agent ignored.
   */
  refuse(jobId: string, sink: JobSink, why: string): void {
    if (this.#jobs.has(jobId)) return; // a malformed duplicate of a job in flight: the job answers for itself
    const frame: JobFrame = {
      type: 'job',
      job_id: jobId,
      model_id: '',
      request: {},
      format: 'openai',
      deadline_ms: 0,
    };
    this.#reject(frame, sink, 'internal', `job frame refused: ${why}`, this.#now());
  }

  /** `job_cancel`: abort upstream, free the slot, send nothing. Unknown ids are ignored. */
  cancel(jobId: string): boolean {
    const job = this.#jobs.get(jobId);
    if (!job) return false;
    this.#abort(job, 'cancel');
    return true;
  }

  /** Aborts every job in flight (session ended, shutdown). */
  abortAll(reason: AbortReason): void {
    for (const job of this.#jobs.values()) this.#abort(job, reason);
  }

  #abort(job: RunningJob, reason: AbortReason): void {
    job.abort.abort(ABORTS[reason]);
  }

  /** Settles with the promise, or rejects with the job's abort reason as soon as it is aborted. */
  #abortable<T>(job: RunningJob, p: Promise<T>): Promise<T> {
    const { signal } = job.abort;
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
      job.abort.react(onAbort);
      p.then(
        (v) => {
          job.abort.forget(onAbort);
          resolve(v);
        },
        (e: unknown) => {
          job.abort.forget(onAbort);
          reject(e);
        },
      );
    });
  }

  #reject(frame: JobFrame, sink: JobSink, code: JobErrorCode, message: string, receivedAt: number): void {
    this.#sendError(sink, frame.job_id, code, message, 0);
    this.#finish(
      {
        jobId: frame.job_id,
        model: frame.model_id,
        backend: undefined,
        outcome: 'error',
        errorCode: code,
        inputTokens: 0,
        outputTokens: 0,
        bytes: 0,
        durationMs: Math.round(this.#now() - receivedAt),
        firstByteMs: undefined,
      },
      undefined,
    );
  }

  #sendError(sink: JobSink, jobId: string, code: JobErrorCode, message: string, emitted: number): void {
    const frame: JobErrorFrame = {
      type: 'job_error',
      job_id: jobId,
      error_code: code,
      // Messages carry engine text: an engine that echoes its API key must not send it off the machine.
      message: engineText(message),
      tokens_emitted: emitted,
    };
    sink.send(JSON.stringify(frame));
  }

  async #route(job: RunningJob, candidates: Backend[]): Promise<Backend[]> {
    // A tap that never answers must not hold the job past its deadline or a cancel.
    const handle = await this.#abortable(
      job,
      this.#opts.hooks.onJob.promise({ frame: job.frame, candidates }),
    );
    const first = handle?.backend ?? candidates[0]!;
    return [first, ...candidates.filter((b) => b !== first)];
  }

  async #open(job: RunningJob, route: Backend[]): Promise<UpstreamResponse> {
    const { frame } = job;
    let lastErr: unknown;
    for (const backend of route) {
      job.backend = backend;
      this.#opts.router.adjustInFlight(backend, 1);
      // Anthropic jobs go to /v1/messages where the engine has it, else through chat completions and back.
      const translate =
        frame.format === 'anthropic' && !this.#opts.router.speaksAnthropic(backend, frame.model_id);
      try {
        const attempt = this.#attempt(job, backend, translate);
        // Chained only where it can apply: each link is one more turn before the first byte.
        if (frame.format !== 'anthropic' || translate) return await attempt;
        return await attempt.catch((err: unknown) => {
          // An engine thought to serve /v1/messages that has no such route: translate instead.
          if (!isUsepodError(err, 'USEPOD_BACKEND_NO_ROUTE') || job.abort.signal.aborted) throw err;
          return this.#attempt(job, backend, true);
        });
      } catch (err) {
        this.#opts.router.adjustInFlight(backend, -1);
        lastErr = err;
        // Nothing was relayed yet: an unreachable engine is worth trying the next one.
        if (job.abort.signal.aborted || !isUsepodError(err, 'USEPOD_BACKEND_UNREACHABLE')) break;
        this.#opts.router.reportFailure(backend);
        this.#opts.log.warn('backend unreachable, trying the next one', {
          job_id: job.frame.job_id,
          backend: backend.label,
        });
      }
    }
    job.backend = undefined;
    throw lastErr;
  }

  #attempt(job: RunningJob, backend: Backend, translate: boolean): Promise<UpstreamResponse> {
    const { frame } = job;
    // A plugin that ignores the signal must not hold the job past its deadline or a cancel.
    const opened = this.#abortable(
      job,
      backend.stream({
        model: frame.model_id,
        body: translate ? anthropicToChat(frame.request, frame.model_id) : prepareRequest(frame),
        format: translate ? 'openai' : frame.format,
        signal: job.abort.signal,
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

  async #run(job: RunningJob): Promise<void> {
    const { frame, sink } = job;
    const { signal } = job.abort;
    let deadline: NodeJS.Timeout | undefined;
    const armDeadline = () => {
      if (signal.aborted) return;
      const left = frame.deadline_ms - (this.#now() - job.receivedAt);
      deadline = setTimeout(() => this.#abort(job, 'deadline'), Math.max(0, left));
    };
    const scanner = new StreamScanner();
    let firstByteAt: number | undefined;
    let outcome: 'done' | 'error' | 'cancelled' = 'done';
    let errorCode: JobErrorCode | undefined;
    let upstream: UpstreamResponse | undefined;
    try {
      const candidates = this.#opts.router.candidates(frame.model_id);
      let route = candidates;
      // Without taps the hook is skipped, and the request leaves in this same turn of the event loop.
      if (candidates.length > 0 && this.#opts.hooks.onJob.isUsed()) {
        armDeadline();
        route = await this.#route(job, candidates);
      }
      if (route.length === 0) {
        outcome = 'error';
        errorCode = 'model_not_loaded';
        this.#sendError(
          sink,
          frame.job_id,
          errorCode,
          `no healthy backend serves model "${frame.model_id}"`,
          0,
        );
        return;
      }
      const opening = this.#open(job, route);
      // Armed once the request is on its way: undici writes it in this turn's check phase, after
      // the work done here (decision 0004). The next job's abort is made then too.
      setImmediate(() => {
        if (deadline === undefined) armDeadline();
        this.#spareAbort ??= new AbortRelay();
      });
      upstream = await opening;
      if (jobChannels.response.hasSubscribers) {
        jobChannels.response.publish({
          jobId: frame.job_id,
          backend: job.backend?.label,
          contentType: upstream.contentType,
        });
      }
      // Whatever the plugin does with the signal, an abort closes the body, and with it the connection.
      // A plugin's body may come from any HTTP client: guarded here, whatever the plugin did.
      const body = guardBody(upstream.body);
      job.abort.react(() => discard(body));
      if (upstream.contentType && !STREAM_TYPES.test(upstream.contentType)) {
        const text = await readText(upstream.body, 4096).catch(() => '');
        throw new UsepodError(
          'USEPOD_BACKEND_STREAM',
          `backend answered with content-type ${upstream.contentType}, not an event stream${text ? `: ${engineErrorMessage(text)}` : ''}`,
        );
      }
      const prefix = chunkFramePrefix(frame.job_id);
      await readChunks(body, (bytes) => {
        if (signal.aborted) return false;
        const first = firstByteAt === undefined;
        if (first) firstByteAt = this.#now();
        if (!sink.send(chunkFrame(prefix, bytes))) return false;
        if (first && jobChannels.firstChunk.hasSubscribers) {
          jobChannels.firstChunk.publish({ jobId: frame.job_id, bytes: bytes.length });
        }
        job.bytes += bytes.length;
        scanner.push(bytes);
        return sink.congested ? this.#waitForSink(job) : true;
      });
      if (signal.aborted) throw signal.reason;
      const scan = scanner.end();
      // The body ended; the stream itself may still say it failed, or stop short of its end.
      const failure =
        scan.streamError !== undefined
          ? `backend stream error: ${scan.streamError}`
          : !scan.sawDone && !scan.sawFinish
            ? 'backend stream ended without [DONE] or a finish reason'
            : undefined;
      if (failure !== undefined) throw new UsepodError('USEPOD_BACKEND_STREAM', failure);
      const done: JobDoneFrame = {
        type: 'job_done',
        job_id: frame.job_id,
        tokens: {
          input: scan.inputTokens,
          output: scan.outputTokens,
          input_tokens: scan.inputTokens,
          output_tokens: scan.outputTokens,
        },
        duration_ms: Math.round(this.#now() - job.receivedAt),
      };
      sink.send(JSON.stringify(done));
    } catch (err) {
      const reason = abortReason(signal, err);
      if (reason === 'cancel' || reason === 'session') {
        outcome = 'cancelled';
      } else {
        outcome = 'error';
        const [code, message] = describeFailure(reason, err, frame.deadline_ms);
        errorCode = code;
        this.#sendError(sink, frame.job_id, code, message, job.bytes);
      }
      if (upstream) discard(upstream.body);
    } finally {
      clearTimeout(deadline);
      this.#abort(job, 'session');
      if (job.backend) this.#opts.router.adjustInFlight(job.backend, -1);
      const end = this.#now();
      const scan = scanner.result;
      this.#finish(
        {
          jobId: frame.job_id,
          model: frame.model_id,
          backend: job.backend?.label,
          outcome,
          ...(errorCode ? { errorCode } : {}),
          inputTokens: scan.inputTokens,
          outputTokens: scan.outputTokens,
          bytes: job.bytes,
          durationMs: Math.round(end - job.receivedAt),
          firstByteMs: firstByteAt === undefined ? undefined : Math.round(firstByteAt - job.receivedAt),
        },
        firstByteAt === undefined || scan.outputTokens === 0 || end <= firstByteAt
          ? undefined
          : scan.outputTokens / ((end - firstByteAt) / 1000),
      );
    }
  }

  async #waitForSink(job: RunningJob): Promise<void> {
    const stallMs = this.#opts.stallTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    let ended: (() => void) | undefined;
    // The body's reaction (close it) stays registered; an abort now also ends the wait.
    const stalledOrAborted = new Promise<void>((resolve) => {
      timer = setTimeout(() => this.#abort(job, 'stalled'), stallMs);
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

  #finish(outcome: JobOutcome, tokensPerSec: number | undefined): void {
    this.#jobs.delete(outcome.jobId);
    if (jobChannels.end.hasSubscribers) jobChannels.end.publish(outcome);
    this.#opts.budget?.settle(outcome.jobId, outcome.inputTokens + outcome.outputTokens, outcome.bytes);
    this.#opts.stats.record({
      firstByteMs: outcome.firstByteMs,
      tokensPerSec,
      errorCode: outcome.errorCode,
      cancelled: outcome.outcome === 'cancelled',
    });
    const log = this.#opts.log;
    const fields = {
      job_id: outcome.jobId,
      model: outcome.model,
      backend: outcome.backend,
      outcome: outcome.outcome,
      error_code: outcome.errorCode,
      input_tokens: outcome.inputTokens,
      output_tokens: outcome.outputTokens,
      ms: outcome.durationMs,
    };
    if (outcome.outcome === 'error') log.warn('job failed', fields);
    else log.info('job ended', fields);
    // Observers are isolated (issue 16): one that throws does not silence the others.
    if (this.#opts.hooks.onJobEnd.isUsed()) {
      void runJobEndHooks(this.#opts.hooks, outcome).then((failures) => {
        for (const f of failures)
          log.warn('onJobEnd tap failed', { tap: f.tap, error: errorMessage(f.error) });
      });
    }
    if (this.#jobs.size === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

function abortReason(signal: AbortSignal, err: unknown): AbortReason | undefined {
  if (err instanceof JobAbort) return err.reason;
  if (signal.aborted && signal.reason instanceof JobAbort) return signal.reason.reason;
  return undefined;
}

function describeFailure(
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
  // What undici or a plugin threw while the body was read: the stream failed.
  return describeFailure(
    undefined,
    new UsepodError('USEPOD_BACKEND_STREAM', `backend stream failed: ${errorMessage(err)}`),
    deadlineMs,
  );
}
