import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { SeedGroup } from '../observability/metrics.js';
import type { JobOutcome } from '../plugins/hooks.js';
import type { JobFrame } from '../protocol/frames.js';

/**
 * Where each job the agent receives is recorded durably (the operator's ledger, issue 18), before the
 * coordinator hears the job ended: a terminal frame is sent only after `write` returned, so a crash never
 * leaves a job the coordinator saw end without its record. Records of one event-loop turn are written
 * together (one transaction), after the turn's relay work: the write never sits between two chunks.
 */
export type { Refusal } from './refusal.js';

import type { Refusal } from './refusal.js';

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
  /**
   * Writes the records durably, or throws / rejects (the frames are then sent anyway, and the failure
   * logged). A promise (a worker thread writing) holds those jobs' terminal frames until it settles, and
   * never other streams; core waits at most `JOURNAL_WAIT_MS` for it.
   */
  write(records: JobRecord[]): void | Promise<void>;
  /** The sums of the rows received before `before` (epoch ms): the Prometheus counters resume from them. */
  totals?(before: number): SeedGroup[] | Promise<SeedGroup[]>;
}

/**
 * The longest a terminal frame waits for its record: a journal that cannot write by then (a locked or
 * full disk) keeps its own retry; the coordinator must still hear the job ended.
 */
export const JOURNAL_WAIT_MS = 10_000;

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

  #inWrite = 0;

  /** Records waiting for this turn's write, or for a write under way. */
  get pending(): number {
    return this.#pending.length + this.#inWrite;
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
    this.#inWrite += batch.length;
    const send = () => {
      this.#inWrite -= batch.length;
      for (const { end } of batch) if (end.frame !== undefined) end.sink.send(end.frame);
      this.#onFlushed();
    };
    const failed = (err: unknown) =>
      this.#log.warn('ledger write failed; the jobs are not recorded', {
        jobs: batch.length,
        error: errorMessage(err),
      });
    let written: void | Promise<void>;
    try {
      written = this.#journal.write(batch.map((p) => p.record));
    } catch (err) {
      failed(err);
      send();
      return;
    }
    if (!(written instanceof Promise)) {
      send();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#log.warn('the ledger is slow; terminal frames go out before their records', {
          jobs: batch.length,
          waited_ms: JOURNAL_WAIT_MS,
        });
        resolve();
      }, JOURNAL_WAIT_MS);
    });
    void Promise.race([written.catch(failed), late]).then(() => {
      clearTimeout(timer);
      send();
    });
  }
}
