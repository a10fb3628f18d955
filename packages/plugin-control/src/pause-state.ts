import { unlink } from 'node:fs/promises';
import { engineText, errorMessage, type Logger, readLocalText, replaceFile } from '@usepod-agent/core';
import { z } from 'zod';
import { MAX_REASON } from './protocol.js';

/**
 * The owner's pause on disk (`pause.json`, issue 28): the only hold that outlives a restart. GPU yielding,
 * quiet hours and any other hold are recomputed at start from their own rules, so they are never written.
 *
 * The folder is the owner's (0700), yet the file is treated as untrusted: it is read without following
 * a link, only when it is a small regular file of ours, and checked field by field; anything else is
 * ignored with one warning. Writes are queued (one at a time, the latest state wins), atomic and never
 * through a link (core's `replaceFile`: a new temp file, O_EXCL, 0600, fsync, rename); a failed write is
 * one warning, retried with a growing delay, never a rejection.
 */

/** What pause.json holds: the owner's pause. */
export interface SavedPause {
  reason: string;
  /** Epoch ms it ends; none: until resumed. */
  until?: number;
}

/** Larger than any pause.json this agent writes: anything bigger is not ours. */
const MAX_FILE = 4096;

const saved = z.object({
  /** Written since issue 28; a file without it is the previous version's (see `legacyNotOwner`). */
  by: z.string().max(64).optional(),
  reason: z
    .string()
    .max(4 * MAX_REASON)
    .optional(),
  until: z.number().int().positive().optional(),
});

/**
 * The previous version wrote every pause, GPU yielding's and quiet hours' too, without saying whose, and
 * restored each as the owner's (a pause that never ended). Its own texts tell them apart: such a file is
 * not restored; any other reason was the owner's.
 */
function legacyNotOwner(reason: string | undefined): boolean {
  return reason !== undefined && (reason.startsWith('GPU in use: ') || reason.startsWith('quiet hours ('));
}

export type ReadResult =
  | { kind: 'none' }
  | { kind: 'pause'; pause: SavedPause }
  /** Present but not to be restored; `why` is one line, `warn` when it is damage rather than routine. */
  | { kind: 'ignored'; why: string; warn: boolean };

/** Reads pause.json: never follows a link, never blocks on a FIFO, never reads more than MAX_FILE. */
export async function readPause(path: string, now = Date.now()): Promise<ReadResult> {
  // Another user's file is not this agent's pause, nor a link another user could point elsewhere.
  const read = await readLocalText(path, MAX_FILE, { noLink: true, ownUser: true });
  if (read.kind === 'missing') return { kind: 'none' };
  if (read.kind === 'refused') return { kind: 'ignored', why: `it ${read.why}`, warn: true };
  const text = read.text;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'ignored', why: 'it is not JSON', warn: true };
  }
  const p = saved.safeParse(value);
  if (!p.success) return { kind: 'ignored', why: 'it is not a pause (wrong fields)', warn: true };
  const { by, reason, until } = p.data;
  if (by !== undefined && by !== 'owner') {
    return { kind: 'ignored', why: `it is a pause by ${by}, which is recomputed at start`, warn: false };
  }
  if (by === undefined && legacyNotOwner(reason)) {
    return { kind: 'ignored', why: 'it is a GPU or quiet-hours pause, recomputed at start', warn: false };
  }
  if (until !== undefined && until <= now) return { kind: 'ignored', why: 'it has ended', warn: false };
  return {
    kind: 'pause',
    // Folded: a file is outside text, and the reason reaches logs, status and alerts.
    pause: { reason: engineText(reason ?? '', MAX_REASON), ...(until !== undefined ? { until } : {}) },
  };
}

/** Removes `path` (a link itself, never its target); absent is done. */
async function remove(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export interface PauseStoreOptions {
  log: Logger;
  /** First delay before a failed write is tried again; it doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
}

/** Keeps pause.json in step with the owner's pause: queued, coalesced, retried, never throwing. */
export class PauseStore {
  readonly #path: string;
  readonly #o: Required<PauseStoreOptions>;
  /** The state still to write: a pause, null (no file), or undefined (nothing pending). */
  #want: SavedPause | null | undefined;
  #running: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #delay: number;
  #error: string | undefined;
  #closed = false;

  constructor(path: string, opts: PauseStoreOptions) {
    this.#path = path;
    this.#o = { retryMs: 1_000, maxRetryMs: 60_000, ...opts };
    this.#delay = this.#o.retryMs;
  }

  get path(): string {
    return this.#path;
  }

  /** Why the last write failed, while it keeps failing. */
  get error(): string | undefined {
    return this.#error;
  }

  /** The file should now say this (null: no pause to keep). Written in order; only the latest counts. */
  set(pause: SavedPause | null): void {
    if (this.#closed) return;
    this.#want = pause;
    this.#kick();
  }

  /** Resolves once no write is in flight: saved, or failed (and retrying: see `error`). Never rejects. */
  async settled(): Promise<{ saved: boolean; error?: string }> {
    while (this.#running) await this.#running;
    return this.#error === undefined ? { saved: true } : { saved: false, error: this.#error };
  }

  /** Stops retrying (the agent stops); a write in flight finishes. */
  close(): Promise<{ saved: boolean; error?: string }> {
    this.#closed = true;
    clearTimeout(this.#retry);
    return this.settled();
  }

  #kick(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (this.#want !== undefined) {
      const want = this.#want;
      this.#want = undefined;
      try {
        if (want) {
          const { reason, until } = want;
          await replaceFile(
            this.#path,
            `${JSON.stringify({ by: 'owner', reason, ...(until ? { until } : {}) })}\n`,
          );
        } else await remove(this.#path);
      } catch (err) {
        // Tried again later unless a newer state came meanwhile (that one is tried at once).
        this.#want ??= want;
        this.#fail(err);
        if (this.#want === want) {
          this.#schedule();
          return;
        }
        continue;
      }
      if (this.#error !== undefined) this.#o.log.info('the pause state is saved again', { file: this.#path });
      this.#error = undefined;
      this.#delay = this.#o.retryMs;
    }
  }

  #fail(err: unknown): void {
    const first = this.#error === undefined;
    this.#error = errorMessage(err);
    // One warning per failing spell (a full disk is not news every minute), then retries in silence.
    if (first) {
      this.#o.log.warn('the pause state could not be saved; retrying (a restart now would forget it)', {
        file: this.#path,
        error: this.#error,
      });
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#o.maxRetryMs);
    this.#retry = setTimeout(() => this.#kick(), delay);
    this.#retry.unref();
  }
}
