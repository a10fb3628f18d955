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
