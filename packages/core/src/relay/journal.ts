import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { JobOutcome } from '../plugins/hooks.js';
import type { JobFrame } from '../protocol/frames.js';

/**
 * Where each job the agent receives is recorded durably (the operator's ledger, issue 18), before the
 * coordinator hears the job ended: a terminal frame is sent only after `write` returned, so a crash never
 * leaves a job the coordinator saw end without its record. Records of one event-loop turn are written
 * together (one transaction), after the turn's relay work: the write never sits between two chunks.
 */
/**
 * Why a job was turned away without reaching an engine: `max_concurrent`, `token_budget` and `paused`
 * (`out_of_capacity` on the wire), `draining` (stopping), `model_not_loaded` (no healthy engine serves
 * it), `request_too_large`, `malformed` (a frame without model or request). All but the last are jobs
 * the operator missed.
 */
export type Refusal =
  | 'max_concurrent'
  | 'token_budget'
  | 'paused'
  | 'draining'
  | 'model_not_loaded'
  | 'request_too_large'
  | 'malformed';

export interface JobRecord extends JobOutcome {
  /** When the job frame arrived (epoch ms). */
  receivedAt: number;
  format: 'openai' | 'anthropic';
  /** The prices advertised for the model when it ended, micro-USDC per 1M tokens (none: not advertised). */
  inputPer1m: number | undefined;
  outputPer1m: number | undefined;
  /** Set when the job was turned away. */
  refusal?: Refusal;
}

export interface JobJournal {
  /** Writes the records durably, or throws (the frames are then sent anyway, and the failure logged). */
  write(records: JobRecord[]): void;
}

/** How a job ended, for the journal: its terminal frame (sent after the write) and why it was turned away. */
export interface JobEnd {
  sink: { send(frame: string): void };
  frame: string | undefined;
  format: JobFrame['format'];
  refusal?: Refusal;
}

/**
 * The records of one event-loop turn, written together after the turn's relay work (the check phase),
 * each job's terminal frame sent right after: one transaction however many jobs ended in the turn.
 */
export class JournalBatch {
  readonly #journal: JobJournal;
  readonly #log: Logger;
  readonly #priceOf:
    | ((model: string) => { input_per_1m: number; output_per_1m: number } | undefined)
    | undefined;
  readonly #onFlushed: () => void;
  #pending: { record: JobRecord; end: JobEnd }[] = [];

  constructor(o: {
    journal: JobJournal;
    log: Logger;
    priceOf?: ((model: string) => { input_per_1m: number; output_per_1m: number } | undefined) | undefined;
    /** After a batch's frames left (the executor may be idle now). */
    onFlushed: () => void;
  }) {
    this.#journal = o.journal;
    this.#log = o.log;
    this.#priceOf = o.priceOf;
    this.#onFlushed = o.onFlushed;
  }

  /** Records waiting for this turn's write. */
  get pending(): number {
    return this.#pending.length;
  }

  add(outcome: JobOutcome, end: JobEnd): void {
    const price = this.#priceOf?.(outcome.model);
    const record: JobRecord = {
      ...outcome,
      receivedAt: Date.now() - outcome.durationMs,
      format: end.format,
      inputPer1m: price?.input_per_1m,
      outputPer1m: price?.output_per_1m,
      ...(end.refusal ? { refusal: end.refusal } : {}),
    };
    if (this.#pending.push({ record, end }) === 1) setImmediate(() => this.#flush());
  }

  #flush(): void {
    const batch = this.#pending;
    this.#pending = [];
    try {
      this.#journal.write(batch.map((p) => p.record));
    } catch (err) {
      this.#log.warn('ledger write failed; the jobs are not recorded', {
        jobs: batch.length,
        error: errorMessage(err),
      });
    }
    for (const { end } of batch) if (end.frame !== undefined) end.sink.send(end.frame);
    this.#onFlushed();
  }
}
