import type { BackendLoad, BackendModel, BackendStatus } from './backend/backend.js';
import { redactor } from './observability/redact.js';

/**
 * The one place where values from the coordinator or an engine are checked and bounded before they
 * reach a file, a log line, a metric label, an outgoing frame or an object key (issue 14,
 * docs/security.md). Frames from the coordinator are checked field by field in protocol/frames.ts
 * (ids by charset and length); what engines report passes through here.
 */

/** More tokens than any engine serves in one job: a usage figure above it is a lie, not a count. */
export const MAX_JOB_TOKENS = 100_000_000;
/** A price above $10,000 per 1M tokens (micro-USDC) is not a price an upstream really charges. */
export const MAX_PRICE_PER_1M = 10_000_000_000;
/** Models one backend may offer; an engine listing more is cut here, with a warning. */
export const MAX_MODELS_PER_BACKEND = 2_048;
/** Longest model id taken from an engine. */
export const MAX_MODEL_ID = 256;
/** Longest engine text (an error message, a probe's detail) carried into a frame or a log line. */
export const MAX_ENGINE_TEXT = 1_024;

/** C0 and C1 controls, DEL, and the Unicode line and paragraph separators: nothing a terminal should get raw. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/**
 * What `engineText` folds: those, and the bidi controls (marks, embeddings, overrides, isolates), which
 * reorder what a terminal, a page or a chat shows after them (a process name with U+202E in a GPU hold).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+/g;

/** A token count reported by an engine: a whole number from 0 to MAX_JOB_TOKENS, else not a count. */
export function tokenCount(v: unknown): number | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_JOB_TOKENS) return undefined;
  return Math.floor(v);
}

/** A model id an engine lists: 1 to 256 characters with no control character (no ANSI escapes). */
export function isModelId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_MODEL_ID && !CONTROL.test(id);
}

/** A positive whole number up to `max` (context windows, capacities). */
export function boundedInt(v: unknown, max: number): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= max ? v : undefined;
}

/** A count or ratio an engine reports about its load: finite, not negative, at most `max`. */
function boundedNumber(v: unknown, max: number): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max ? v : undefined;
}

/**
 * Engine text bound for a frame or a log line: every configured secret redacted (an engine may echo its
 * API key in an error body), control and bidi characters folded to a space, at most MAX_ENGINE_TEXT characters.
 */
export function engineText(text: string, max = MAX_ENGINE_TEXT): string {
  const clean = redactor.redact(text).replace(CONTROLS, ' ');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** Own properties only: a config table looked up by an engine's or the coordinator's string. */
export function ownEntry<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

export interface CheckedStatus {
  status: BackendStatus;
  /** What was dropped, for one warning line. */
  dropped: { invalidIds: number; overLimit: number };
}

/**
 * What a backend's probe reported, checked: model ids valid and unique, at most MAX_MODELS_PER_BACKEND,
 * windows and prices bounded, load figures finite. Whatever plugin made it, third-party ones included.
 */
export function checkStatus(status: BackendStatus): CheckedStatus {
  const dropped = { invalidIds: 0, overLimit: 0 };
  const seen = new Set<string>();
  const models: BackendModel[] = [];
  for (const m of Array.isArray(status.models) ? status.models : []) {
    if (!m || !isModelId(m.id) || seen.has(m.id)) {
      dropped.invalidIds++;
      continue;
    }
    if (models.length >= MAX_MODELS_PER_BACKEND) {
      dropped.overLimit++;
      continue;
    }
    seen.add(m.id);
    const out: BackendModel = { id: m.id };
    const window = boundedInt(m.contextWindow, MAX_JOB_TOKENS);
    if (window !== undefined) out.contextWindow = window;
    const capacity = boundedInt(m.capacity, 4096);
    if (capacity !== undefined) out.capacity = capacity;
    const p = m.upstreamPrice;
    const input = boundedNumber(p?.input_per_1m, MAX_PRICE_PER_1M);
    const output = boundedNumber(p?.output_per_1m, MAX_PRICE_PER_1M);
    if (input !== undefined && output !== undefined) {
      out.upstreamPrice = { input_per_1m: Math.round(input), output_per_1m: Math.round(output) };
    }
    if (m.anthropicNative === true) out.anthropicNative = true;
    models.push(out);
  }
  const checked: BackendStatus = { healthy: status.healthy === true, models };
  const load = checkLoad(status.load);
  if (load) checked.load = load;
  if (typeof status.detail === 'string') checked.detail = engineText(status.detail, 200);
  return { status: checked, dropped };
}

function checkLoad(load: BackendLoad | undefined): BackendLoad | undefined {
  if (!load || typeof load !== 'object') return undefined;
  const out: BackendLoad = {};
  const running = boundedNumber(load.running, 1e6);
  const waiting = boundedNumber(load.waiting, 1e6);
  const kv = boundedNumber(load.kvCacheUsage, 1);
  const capacity = boundedInt(load.capacity, 4096);
  if (running !== undefined) out.running = running;
  if (waiting !== undefined) out.waiting = waiting;
  if (kv !== undefined) out.kvCacheUsage = kv;
  if (capacity !== undefined) out.capacity = capacity;
  return out;
}

/**
 * An HTTP answer's body as text, read to at most `max` bytes: past it the stream is cancelled and this
 * rejects with a `RangeError`. Whatever answers (another agent, a process on the agent's port) is not
 * trusted with memory.
 *
 * `signal` bounds the read in time: when it aborts, the stream is cancelled and this rejects with its
 * reason. Pass the deadline given to `fetch` again: on Node 20 fetch's `Request` follows the caller's
 * signal through a `WeakRef`, so once the `Request` is collected in the middle of a body the abort no
 * longer reaches it, and a peer that trickles a byte at a time held the read for good (the full suite's
 * hostile fleet peer, under its collections). A listener here keeps the signal, and the read, bounded.
 */
export async function readBoundedText(res: Response, max: number, signal?: AbortSignal): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const stop = (): void => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  if (signal?.aborted) {
    stop();
    throw signal.reason;
  }
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      // A cancelled read ends as if the body had: that end is the deadline's, not the peer's.
      if (signal?.aborted) throw signal.reason;
      if (done) return Buffer.concat(parts).toString('utf8');
      size += value.byteLength;
      if (size > max) {
        await reader.cancel();
        // A RangeError, so callers tell "too big" from a failed read without reading the words.
        throw new RangeError(`answer over ${max} bytes`);
      }
      parts.push(value);
    }
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}
