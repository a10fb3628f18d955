import type { Config } from '../config/schema.js';
import { errorMessage, isUsepodError } from '../errors.js';
import type { AbortReason } from '../relay/job.js';
import { engineText } from '../untrusted.js';

/**
 * Real jobs count, not only self-tests (issue 28, after Envoy's outlier detection and LiteLLM's
 * cooldowns): a (backend, model) pair whose jobs fail `eject_after` times in a row on the engine's side
 * is ejected from routing for a cooldown that doubles on repeats, then comes back when a self-test
 * passes. What counts as the engine's side is judged here, by error code and status, never by text.
 */

/** Why a job that reached a backend did not finish: its abort reason (if aborted) and the error. */
export interface JobFailure {
  reason: AbortReason | undefined;
  error: unknown;
}

/**
 * How a job's end counts for its pair: `ok` (it finished: the run of failures ends), `engine` (the
 * engine failed it: counts), `neutral` (not the engine's doing, or capacity: neither counts nor resets).
 */
export type JobVerdict = 'ok' | 'engine' | 'neutral';

export function judgeJob(failure: JobFailure | undefined): JobVerdict {
  if (failure === undefined) return 'ok';
  // A cancel, the coordinator's deadline, a drain, a session that ended, a coordinator that stopped
  // reading: the job was ended from our side, whatever the engine was doing.
  if (failure.reason !== undefined) return 'neutral';
  const err = failure.error;
  // Not a typed error: the engine's body failed while it was read, a cut stream.
  if (!isUsepodError(err)) return 'engine';
  switch (err.code) {
    case 'USEPOD_BACKEND_UNREACHABLE': // refused, reset, or a 503 "loading model"
    case 'USEPOD_BACKEND_STREAM': // an error inside the stream, cut short, not an event stream
    case 'USEPOD_BACKEND_MODEL_NOT_FOUND': // listed, yet the engine cannot run it
    case 'USEPOD_BACKEND_AUTH': // the engine refuses the operator's key: every job would fail here
      return 'engine';
    case 'USEPOD_BACKEND_HTTP':
      // A status the engine answered: 5xx is the engine's, 4xx the request's. Without a status it is
      // the transport failing (a cause) or an error the engine put in a 200 (no telling whose).
      if (err.status !== undefined) return err.status >= 500 ? 'engine' : 'neutral';
      return err.cause !== undefined ? 'engine' : 'neutral';
    default:
      // Busy (429, 503 "server busy") is capacity, not a fault; no route makes the agent translate;
      // a plugin's own hook failing is not the engine's.
      return 'neutral';
  }
}

/** A failure's words for a log, an event and `doctor`: bounded and redacted (engine text). */
export function failureText(failure: JobFailure): string {
  return engineText(errorMessage(failure.error), 200);
}

export interface EjectionSettings {
  /** Engine-side failures in a row that eject a pair; 0: never. */
  after: number;
  /** The first cooldown; each repeat doubles it up to `maxCooldownMs`. */
  cooldownMs: number;
  maxCooldownMs: number;
}

export function ejectionSettings(c: Config['selftest']): EjectionSettings {
  return {
    after: c.eject_after,
    cooldownMs: c.eject_cooldown_s * 1000,
    maxCooldownMs: Math.max(c.eject_cooldown_max_s, c.eject_cooldown_s) * 1000,
  };
}

/** The cooldown of a pair's `level`-th ejection in a row (1, 2, ...): doubling, capped. */
export function cooldownMs(level: number, s: Pick<EjectionSettings, 'cooldownMs' | 'maxCooldownMs'>): number {
  // 2^30 is far past any cap; the exponent is bounded so the product stays a finite number.
  return Math.min(s.cooldownMs * 2 ** Math.min(Math.max(level, 1) - 1, 30), s.maxCooldownMs);
}
