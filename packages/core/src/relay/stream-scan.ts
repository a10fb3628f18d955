/**
 * Watches a relayed response for the few facts the agent needs (usage, the end
 * marker, an error event) without parsing or re-framing it. Lines are found by
 * byte search; only the rare lines that can carry usage, an error or a finish
 * reason are decoded and parsed. A line split across network chunks is held
 * until its newline arrives, so usage split over chunks is still seen.
 */
import { tokenCount } from '../untrusted.js';

const NL = 0x0a;
export const MAX_PENDING = 1024 * 1024;

const DATA = Buffer.from('data:');
const EVENT = Buffer.from('event:');
const K_USAGE = Buffer.from('"usage"');
const K_ERROR = Buffer.from('"error"');
const K_FINISH = Buffer.from('"finish_reason"');
const K_DONE_NDJSON = Buffer.from('"done"');
const DONE = Buffer.from('[DONE]');

export interface ScanResult {
  inputTokens: number;
  outputTokens: number;
  /** `data: [DONE]` seen (OpenAI event streams). */
  sawDone: boolean;
  /** A non-null `finish_reason`, Anthropic `message_stop`, or NDJSON `"done":true`. */
  sawFinish: boolean;
  /** The first error event inside the stream, as its message. */
  streamError: string | undefined;
  /** Number of `data:` events seen (a rough count of relayed output). */
  events: number;
}

export class StreamScanner {
  readonly result: ScanResult = {
    inputTokens: 0,
    outputTokens: 0,
    sawDone: false,
    sawFinish: false,
    streamError: undefined,
    events: 0,
  };
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Inside a line longer than MAX_PENDING: its rest is skipped up to its newline, never read as a line. */
  #skipping = false;
  #lastEvent = '';
  /** Usage seen explicitly (wins over llama.cpp timings). */
  #haveUsage = false;

  push(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    let nl = buf.indexOf(NL, start);
    while (nl !== -1) {
      if (this.#skipping) {
        this.#skipping = false;
      } else if (this.#pendingBytes > 0) {
        this.#pending.push(buf.subarray(start, nl));
        this.#line(Buffer.concat(this.#pending));
        this.#pending = [];
        this.#pendingBytes = 0;
      } else if (nl - start > 1 || (nl - start === 1 && buf[start] !== 0x0d)) {
        // The blank line after each event (or a lone CR) is skipped here, without a view made for it.
        this.#line(buf.subarray(start, nl));
      }
      start = nl + 1;
      nl = buf.indexOf(NL, start);
    }
    if (start < buf.length && !this.#skipping) {
      // Bounded: a line longer than this is not an event we need to read.
      if (this.#pendingBytes + buf.length - start <= MAX_PENDING) {
        this.#pending.push(Buffer.from(buf.subarray(start)));
        this.#pendingBytes += buf.length - start;
      } else {
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#skipping = true;
      }
    }
  }

  /** Bytes held for a line whose newline has not arrived (at most MAX_PENDING). */
  get held(): number {
    return this.#pendingBytes;
  }

  /** Flushes a last line that had no newline. */
  end(): ScanResult {
    if (this.#pendingBytes > 0 && !this.#skipping) {
      this.#line(Buffer.concat(this.#pending));
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    return this.result;
  }

  #line(raw: Buffer): void {
    let line = raw;
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    // Skipped whether it came in one read or in many (the same answer for any cut of the stream).
    if (line.length === 0 || line.length > MAX_PENDING) return;
    if (startsWith(line, EVENT)) {
      this.#lastEvent = line.subarray(EVENT.length).toString('latin1').trim();
      if (this.#lastEvent === 'message_stop') this.result.sawFinish = true;
      return;
    }
    let payload: Buffer;
    let ndjson = false;
    if (startsWith(line, DATA)) {
      payload = line.subarray(line[DATA.length] === 0x20 ? DATA.length + 1 : DATA.length);
      this.result.events++;
      if (payload.length === DONE.length && payload.equals(DONE)) {
        this.result.sawDone = true;
        return;
      }
    } else if (line[0] === 0x7b /* { */) {
      payload = line; // NDJSON (Ollama native)
      ndjson = true;
      this.result.events++;
    } else {
      return; // SSE comment (`:`), `id:`, `retry:`, or noise
    }
    // Three byte searches per event line; llama.cpp `timings` ride on the finish or usage chunk, so
    // they are read when that chunk is parsed. NDJSON lines need only their `done` and error checks.
    // An `event: error` names its data an error whatever its shape (llama.cpp: `{code, message, type}`).
    const afterErrorEvent = this.#lastEvent === 'error';
    this.#lastEvent = '';
    const interesting = ndjson
      ? payload.includes(K_DONE_NDJSON) || payload.includes(K_ERROR)
      : afterErrorEvent || payload.includes(K_USAGE) || payload.includes(K_ERROR) || finishReasonSet(payload);
    if (!interesting) return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    if (!obj || typeof obj !== 'object') return;
    if (afterErrorEvent && this.result.streamError === undefined) {
      this.result.streamError = errorText(obj.error ?? obj);
    }
    this.#object(obj);
  }

  #object(obj: Record<string, unknown>): void {
    const r = this.result;
    if (obj.error !== undefined && obj.error !== null && r.streamError === undefined) {
      r.streamError = errorText(obj.error);
    }
    if (obj.type === 'error' && r.streamError === undefined) r.streamError = errorText(obj.error ?? obj);
    if (obj.type === 'message_stop') r.sawFinish = true;
    const usage = pickUsage(obj);
    if (usage) {
      const input = num(usage.prompt_tokens) ?? anthropicInput(usage);
      const output = num(usage.completion_tokens) ?? num(usage.output_tokens);
      if (input !== undefined) r.inputTokens = input;
      if (output !== undefined) r.outputTokens = output;
      if (input !== undefined || output !== undefined) this.#haveUsage = true;
    }
    const timings = obj.timings as Record<string, unknown> | undefined;
    if (!this.#haveUsage && timings && typeof timings === 'object') {
      const promptN = (num(timings.prompt_n) ?? 0) + (num(timings.cache_n) ?? 0);
      const predicted = num(timings.predicted_n);
      if (promptN > 0) r.inputTokens = promptN;
      if (predicted !== undefined) r.outputTokens = predicted;
    }
    if (obj.done === true) {
      r.sawFinish = true;
      const pe = num(obj.prompt_eval_count);
      const ev = num(obj.eval_count);
      if (!this.#haveUsage) {
        if (pe !== undefined) r.inputTokens = pe;
        if (ev !== undefined) r.outputTokens = ev;
      }
    }
    const choices = obj.choices;
    if (Array.isArray(choices)) {
      for (const c of choices) {
        if (c && typeof c === 'object' && (c as { finish_reason?: unknown }).finish_reason)
          r.sawFinish = true;
      }
    }
  }
}

/**
 * Anthropic's `input_tokens` leaves out the prompt tokens read from or written to the cache (llama.cpp
 * reports `input_tokens: 1, cache_read_input_tokens: 10` for an 11-token prompt): the prompt is all three.
 * OpenAI's `prompt_tokens` already includes its cached tokens.
 */
function anthropicInput(usage: Record<string, unknown>): number | undefined {
  const input = num(usage.input_tokens);
  if (input === undefined) return undefined;
  const total =
    input + (num(usage.cache_read_input_tokens) ?? 0) + (num(usage.cache_creation_input_tokens) ?? 0);
  return num(total);
}

function pickUsage(obj: Record<string, unknown>): Record<string, unknown> | undefined {
  if (obj.usage && typeof obj.usage === 'object') return obj.usage as Record<string, unknown>;
  // Anthropic `message_start` carries usage inside `message`.
  const msg = obj.message as Record<string, unknown> | undefined;
  if (msg && typeof msg === 'object' && msg.usage && typeof msg.usage === 'object') {
    return msg.usage as Record<string, unknown>;
  }
  return undefined;
}

/** A usage figure: bounded (untrusted.ts), so `1e308` or a count past 2^53 is no count at all. */
const num = tokenCount;

/** Byte by byte in JavaScript: the prefixes are a few bytes, and `Buffer.compare` is a call into C++ per line. */
function startsWith(buf: Buffer, prefix: Buffer): boolean {
  if (buf.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}

/** `"finish_reason"` followed by a string value (not `null`), tolerating spaces. */
function finishReasonSet(payload: Buffer): boolean {
  let i = payload.indexOf(K_FINISH);
  while (i !== -1) {
    let j = i + K_FINISH.length;
    while (j < payload.length && (payload[j] === 0x20 || payload[j] === 0x3a)) j++;
    if (payload[j] === 0x22 /* " */) return true;
    i = payload.indexOf(K_FINISH, j);
  }
  return false;
}

/** Reads the nested, flat and string error shapes of ENGINES.md. */
export function errorText(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err && typeof err === 'object') {
    const e = err as Record<string, unknown>;
    if (typeof e.message === 'string') return e.message;
    if (e.error !== undefined) return errorText(e.error);
  }
  return JSON.stringify(err);
}
