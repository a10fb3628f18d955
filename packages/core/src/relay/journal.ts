import type { JobOutcome } from '../plugins/hooks.js';

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
