import { errorMessage } from '../errors.js';
import type { PersistedIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';

/**
 * Identities whose provider id is not on disk (a save failed, none worked since). Kept beyond one agent:
 * an embedder may hand the same identity to the next agent, whose coordinator assigns the id already in
 * memory, and that session must still save it.
 */
const owed = new WeakSet<PersistedIdentity>();

export interface ProviderIdSaverOptions {
  /** First delay before a failed save is tried again (default 1 s); it doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
}

/**
 * Writes the provider id the coordinator assigned to the identity file, for one agent's connection. A
 * failure (a full disk) is one warning and retries with a growing delay, never the session's end: it was a
 * 'protocol error' that dropped the connection, and the reconnect then skipped the save (the id in memory
 * matched), so a restart enrolled again. The retries end with the agent (`close()`): a stopped agent keeps
 * no timer and writes nothing after its stop, when its lock on the identity is already released.
 */
export class ProviderIdSaver {
  readonly #identity: PersistedIdentity;
  readonly #log: Logger;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  #delay: number;
  #retry: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  /** The id in memory was not written since it was last asked for. */
  #dirty = false;
  /** Saves fail since the last that worked: warned once. */
  #failing = false;
  #closed = false;

  constructor(identity: PersistedIdentity, log: Logger, o: ProviderIdSaverOptions = {}) {
    this.#identity = identity;
    this.#log = log;
    this.#retryMs = o.retryMs ?? 1_000;
    this.#maxRetryMs = o.maxRetryMs ?? 60_000;
    this.#delay = this.#retryMs;
  }

  /** The file lacks the id in memory: a session that keeps that id must still save it. */
  get owed(): boolean {
    return owed.has(this.#identity);
  }

  /**
   * Writes the id now in memory; resolves once tried, never rejects. While a retry waits it does nothing
   * more (the retry writes the id current when it runs); while a write is under way, one more follows it.
   */
  async save(): Promise<void> {
    if (this.#closed) return;
    this.#dirty = true;
    if (this.#retry !== undefined) return;
    this.#writing ??= this.#drain().finally(() => {
      this.#writing = undefined;
    });
    await this.#writing;
  }

  /** The agent stops: no retry from now on; a write under way finishes first. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.#writing;
  }

  async #drain(): Promise<void> {
    const identity = this.#identity;
    while (this.#dirty && !this.#closed) {
      this.#dirty = false;
      try {
        await identity.save();
      } catch (err) {
        this.#fail(err);
        return;
      }
      owed.delete(identity);
      this.#failing = false;
      this.#delay = this.#retryMs;
      this.#log.info('provider id saved', { provider_id: identity.providerId, file: identity.path });
    }
  }

  #fail(err: unknown): void {
    const identity = this.#identity;
    // One warning per failing spell (a full disk is not news every minute), then retries in silence.
    if (!this.#failing) {
      this.#log.warn(
        `the provider id ${identity.providerId} could not be saved to ${identity.path}; retrying (a restart before it is would enroll again)`,
        { error: errorMessage(err), error_code: 'USEPOD_IDENTITY_IO' },
      );
    }
    this.#failing = true;
    owed.add(identity);
    if (this.#closed) return;
    const delay = this.#delay;
    this.#delay = Math.min(delay * 2, this.#maxRetryMs);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.save();
    }, delay);
    this.#retry.unref();
  }
}
