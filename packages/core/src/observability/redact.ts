/**
 * Secrets never reach a log line or an error message. Every secret the agent
 * handles (identity seed, enrollment code, host token, API keys) is registered
 * here once, and every line written by the logger passes through `redact()`.
 */
const REDACTED = '[redacted]';
const SECRET_FIELD = /(secret|token|api_key|apikey|password|enrollment_code|authorization)/i;

export class Redactor {
  readonly #secrets = new Set<string>();

  /** Registers a secret value; values shorter than 6 characters are too common to scrub safely. */
  add(value: string | undefined | null): void {
    if (value && value.length >= 6) this.#secrets.add(value);
  }

  redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) {
      if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    }
    return out;
  }

  /** Redacts a structured value: secret-looking keys are masked whatever their value. */
  redactFields<T>(value: T): T {
    return scrub(value, this) as T;
  }
}

function scrub(value: unknown, r: Redactor): unknown {
  if (typeof value === 'string') return r.redact(value);
  if (Array.isArray(value)) return value.map((v) => scrub(v, r));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // `api_key_env` names a variable, it is not the key itself.
      out[k] = SECRET_FIELD.test(k) && !k.endsWith('_env') && typeof v === 'string' ? REDACTED : scrub(v, r);
    }
    return out;
  }
  return value;
}

/** The process-wide redactor used by the default logger. */
export const redactor = new Redactor();
