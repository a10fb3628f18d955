import type { Backend, UpstreamResponse } from '../backend/backend.js';
import { engineErrorMessage, readText } from '../backend/http.js';
import { type JobErrorCode, UsepodError } from '../errors.js';
import { jobChannels } from '../observability/diagnostics.js';
import type { Logger } from '../observability/log.js';
import type { JobStats } from '../observability/stats.js';
import type { AgentHooks, JobOutcome } from '../plugins/hooks.js';
import { chunkFrame, chunkFramePrefix } from '../protocol/chunk-frame.js';
import type { JobDoneFrame, JobErrorFrame, JobFrame } from '../protocol/frames.js';
import type { JobFailure } from '../routing/ejection.js';
import { engineText } from '../untrusted.js';
import { AbortRelay } from './abort-relay.js';
import {
  ABORTS,
  type AbortReason,
  abortReason,
  announceEnd,
  describeFailure,
  JobAbort,
  type JobSink,
  type RunningJob,
  waitForSink,
} from './job.js';
import { type JobEnd, type JobJournal, JournalBatch, type Refusal } from './journal.js';

import { type OpenerContext, open, type RouterView, route as routeJob, STREAM_TYPES } from './opener.js';
import { discard, guardBody, readChunks } from './read-chunks.js';
import { StreamScanner } from './stream-scan.js';
import { reservationFor, type TokenBudget } from './token-budget.js';

/**
 * Owns the jobs: capacity, routing, the request changes of PROTOCOL.md 5.2,
 * the byte-for-byte relay (5.3), terminal frames (5.4), cancel (5.5) and
 * deadlines (5.6). It writes frames to a `JobSink` and never reads the socket.
 */

export interface ExecutorOptions {
  hooks: AgentHooks;
  /** Every job received, once (the agent's `job_start` event). */
  onStart?: (jobId: string, model: string) => void;
  /** Every job's end, once (the agent's `job_end` event). */
  onEnd?: (outcome: JobOutcome) => void;
  log: Logger;
  /** Where each job's end is told (area `job`, short: its line fits 120 columns); `log` when absent. */
  jobLog?: Logger;
  stats: JobStats;
  router: RouterView;
  maxConcurrent: number;
  /** Refuse request bodies larger than this many bytes. */
  maxRequestBytes: number;
  /** A job whose output cannot be delivered for this long ends with `job_error`. */
  stallTimeoutMs?: number;
  /** `limits.max_tokens_per_minute`. */
  budget?: TokenBudget;
  /** A job was refused because the budget is spent (the agent tells its owner, once a minute at most). */
  onBudgetRefusal?: () => void;
  /** The ledger: each job's record, written before its terminal frame goes out (journal.ts). */
  journal?: JobJournal;
  /** The advertised prices of a model, for the journal's records. */
  priceOf?: (model: string) => { input_per_1m: number; output_per_1m: number } | undefined;
  now?: () => number;
  /**
   * Each job that reached a backend, as it ended there: `failure` says why it did not finish (undefined:
   * it did). Self-tests judge it (routing/ejection.ts) and eject a pair whose jobs keep failing.
   */
  onBackendEnd?(backend: Backend, model: string, failure: JobFailure | undefined): void;
}

export type { AbortReason, JobSink } from './job.js';
export { prepareRequest, type RouterView } from './opener.js';

export class Executor {
  readonly #opts: ExecutorOptions;
  readonly #opener: OpenerContext;
  readonly #jobs = new Map<string, RunningJob>();
  readonly #now: () => number;
  #accepting = true;
  #idleWaiters: (() => void)[] = [];
  /**
   * The next job's abort, made while the previous one waits on its engine: an AbortController and its
   * relay cost about 60 µs on an agent woken from idle, on every job's way to its engine (decision 0004).
   */
  #spareAbort: AbortRelay | undefined;

  /** The ledger's writes, batched per event-loop turn (journal.ts). */
  readonly #journal: JournalBatch | undefined;

  constructor(opts: ExecutorOptions) {
    this.#opts = opts;
    this.#journal =
      opts.journal &&
      new JournalBatch({
        journal: opts.journal,
        log: opts.log,
        priceOf: opts.priceOf,
        onFlushed: () => this.#wakeIdle(),
      });
    this.#opener = { hooks: opts.hooks, router: opts.router, log: opts.log };
    this.#now = opts.now ?? (() => performance.now());
  }

  get inFlight(): number {
    return this.#jobs.size;
  }

  get maxConcurrent(): number {
    return this.#opts.maxConcurrent;
  }

  /** The jobs in flight, oldest first: what they are and how far they got (the dashboard). */
  running(): {
    jobId: string;
    model: string;
    backend: string | undefined;
    ageMs: number;
    bytes: number;
    events: number;
  }[] {
    const now = this.#now();
    return [...this.#jobs.values()].map((j) => ({
      jobId: j.frame.job_id,
      model: j.frame.model_id,
      backend: j.backend?.label,
      ageMs: Math.max(0, Math.round(now - j.receivedAt)),
      bytes: j.bytes,
      events: j.scan?.events ?? 0,
    }));
  }

  /** New jobs are refused with `out_of_capacity` from now on (graceful drain). */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** The owner paused the agent: new jobs are turned away (`paused`), jobs in flight finish. */
  #pausedReason: string | undefined;

  pause(reason: string): void {
    this.#pausedReason = reason;
  }

  resume(): void {
    this.#pausedReason = undefined;
  }

  /** Resolves once no job is in flight. */
  idle(): Promise<void> {
    if (this.#jobs.size === 0 && (this.#journal?.pending ?? 0) === 0) return Promise.resolve();
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
    this.#opts.onStart?.(frame.job_id, frame.model_id);
    if (this.#pausedReason !== undefined) {
      this.#reject(
        'paused',
        frame,
        sink,
        'out_of_capacity',
        `paused by its owner (${this.#pausedReason})`,
        receivedAt,
      );
      return;
    }
    // Only this model's engines are held (a hot GPU): turned away as a pause is, the rest serve.
    const held = this.#opts.router.heldFor?.(frame.model_id);
    if (held !== undefined) {
      this.#reject('paused', frame, sink, 'out_of_capacity', `its engines are held (${held})`, receivedAt);
      return;
    }
    if (!this.#accepting || this.#jobs.size >= this.#opts.maxConcurrent) {
      this.#reject(
        this.#accepting ? 'max_concurrent' : 'draining',
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
        'request_too_large',
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
      this.#reject('token_budget', frame, sink, 'out_of_capacity', message, receivedAt);
      this.#opts.onBudgetRefusal?.();
      return;
    }
    const job: RunningJob = {
      frame,
      abort: this.#spareAbort ?? new AbortRelay(),
      receivedAt,
      sink,
      backend: undefined,
      failedOn: undefined,
      bytes: 0,
      scan: undefined,
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
    this.#reject('malformed', frame, sink, 'internal', `job frame refused: ${why}`, this.#now());
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

  #reject(
    refusal: Refusal,
    frame: JobFrame,
    sink: JobSink,
    code: JobErrorCode,
    message: string,
    receivedAt: number,
  ): void {
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
      { sink, frame: errorFrame(frame.job_id, code, message, 0), format: frame.format, refusal },
    );
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
    job.scan = scanner.result;
    let firstByteAt: number | undefined;
    let outcome: 'done' | 'error' | 'cancelled' = 'done';
    let errorCode: JobErrorCode | undefined;
    let upstream: UpstreamResponse | undefined;
    /** `job_done` or `job_error`, sent by #finish (after the journal, when there is one). */
    let terminal: string | undefined;
    let refusal: Refusal | undefined;
    let failure: JobFailure | undefined;
    try {
      const candidates = this.#opts.router.candidates(frame.model_id);
      let route = candidates;
      // Without taps the hook is skipped, and the request leaves in this same turn of the event loop.
      if (candidates.length > 0 && this.#opts.hooks.onJob.isUsed()) {
        armDeadline();
        route = await routeJob(this.#opener, job, candidates);
      }
      if (route.length === 0) {
        outcome = 'error';
        errorCode = 'model_not_loaded';
        terminal = errorFrame(
          frame.job_id,
          errorCode,
          `no healthy backend serves model "${frame.model_id}"`,
          0,
        );
        refusal = 'model_not_loaded';
        return;
      }
      const opening = open(this.#opener, job, route);
      // Armed once the request is on its way (written by this turn's check phase), after the work
      // done here (decision 0004). The next job's abort is made then too.
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
      // Read on every chunk: the relay's plain field, not the signal's getter (abort-relay.ts).
      const relay = job.abort;
      let sessionGone = false;
      await readChunks(body, (bytes) => {
        if (relay.aborted) return false;
        const first = firstByteAt === undefined;
        if (first) firstByteAt = this.#now();
        if (!sink.send(chunkFrame(prefix, bytes))) {
          sessionGone = true;
          return false;
        }
        if (first && jobChannels.firstChunk.hasSubscribers) {
          jobChannels.firstChunk.publish({ jobId: frame.job_id, bytes: bytes.length });
        }
        job.bytes += bytes.length;
        scanner.push(bytes);
        return sink.congested
          ? waitForSink(job, this.#opts.stallTimeoutMs ?? 60_000, () => this.#abort(job, 'stalled'))
          : true;
      });
      if (signal.aborted) throw signal.reason;
      // The session went before its abort arrived: the stream was cut on our side, not the engine's.
      if (sessionGone) throw new JobAbort('session');
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
      terminal = JSON.stringify(done);
    } catch (err) {
      const reason = abortReason(signal, err);
      failure = { reason, error: err };
      if (reason === 'cancel' || reason === 'session') {
        outcome = 'cancelled';
      } else {
        outcome = 'error';
        const [code, message] = describeFailure(reason, err, frame.deadline_ms);
        errorCode = code;
        terminal = errorFrame(frame.job_id, code, message, job.bytes);
      }
      if (upstream) discard(upstream.body);
    } finally {
      clearTimeout(deadline);
      this.#abort(job, 'session');
      if (job.backend) this.#opts.router.adjustInFlight(job.backend, -1);
      // Told before the terminal frame leaves: the coordinator's next job is routed knowing it.
      const on = job.backend ?? job.failedOn;
      if (on) this.#opts.onBackendEnd?.(on, frame.model_id, failure);
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
        { sink, frame: terminal, format: frame.format, ...(refusal ? { refusal } : {}) },
      );
    }
  }

  /** Idle: no job in flight and no terminal frame waiting for the journal. */
  #wakeIdle(): void {
    if (this.#jobs.size !== 0 || (this.#journal?.pending ?? 0) !== 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #finish(outcome: JobOutcome, tokensPerSec: number | undefined, end: JobEnd): void {
    // Every listener (metrics, the observation stream, the journal) tells a refusal from a failure alike.
    if (end.refusal) outcome.refusal = end.refusal;
    const journal = this.#journal;
    // Without a ledger the terminal frame leaves first, as soon as it is known.
    if (!journal && end.frame !== undefined) end.sink.send(end.frame);
    this.#jobs.delete(outcome.jobId);
    if (jobChannels.end.hasSubscribers) jobChannels.end.publish(outcome);
    this.#opts.budget?.settle(outcome.jobId, outcome.inputTokens + outcome.outputTokens, outcome.bytes);
    this.#opts.stats.record({
      firstByteMs: outcome.firstByteMs,
      tokensPerSec,
      errorCode: outcome.errorCode,
      cancelled: outcome.outcome === 'cancelled',
    });
    announceEnd(outcome, this.#opts.jobLog ?? this.#opts.log);
    this.#opts.onEnd?.(outcome);
    journal?.add(outcome, end);
    this.#wakeIdle();
  }
}

/** A `job_error` frame (PROTOCOL.md 5.4). */
function errorFrame(jobId: string, code: JobErrorCode, message: string, emitted: number): string {
  const frame: JobErrorFrame = {
    type: 'job_error',
    job_id: jobId,
    error_code: code,
    // Messages carry engine text: an engine that echoes its API key must not send it off the machine.
    message: engineText(message),
    tokens_emitted: emitted,
  };
  return JSON.stringify(frame);
}
