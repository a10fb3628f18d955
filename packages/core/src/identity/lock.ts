import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { UsepodError } from '../errors.js';
import { readLocalTextSync } from '../local-file.js';

/**
 * One identity, one agent (issue 17): a lock file next to the key, made exclusively at start, removed at
 * stop and at process exit. A lock left by a crashed agent (its process gone) is taken over. Two agents on
 * one key would each take jobs the coordinator believes one provider runs, and each session would kick
 * the other off.
 */
interface Holder {
  pid: number;
  host: string;
  started: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A holder's line is under 200 bytes: past this the file is no lock of ours (and is never read whole). */
const MAX_LOCK = 4096;

/**
 * The agent named in a lock file, or undefined (gone, or garbage a crash left: taken over). A lock is a
 * small regular file this agent made (O_EXCL, never through a link): a FIFO in its place was waited on
 * for good (before any log line), a link to /dev/zero read gigabytes, so anything else throws, naming it.
 */
function readHolder(path: string): Holder | undefined {
  const read = readLocalTextSync(path, MAX_LOCK, { noLink: true });
  if (read.kind === 'missing') return undefined;
  if (read.kind === 'refused') {
    throw new UsepodError(
      'USEPOD_IDENTITY_IO',
      `the identity lock ${path} ${read.why}: no lock this agent made; remove it`,
      { user: true },
    );
  }
  try {
    const h = JSON.parse(read.text) as Partial<Holder>;
    return typeof h.pid === 'number'
      ? { pid: h.pid, host: String(h.host ?? ''), started: String(h.started ?? '') }
      : undefined;
  } catch {
    return undefined;
  }
}

/** Locks held by this process: a second agent in the same process is refused too. */
const heldHere = new Set<string>();

/** A disk with no room left: the lock's file could be made, not its line written. */
const FULL = new Set(['ENOSPC', 'EDQUOT']);

export class IdentityLock {
  readonly path: string;
  /**
   * One line for the operator when the lock is held with no holder written (a full disk): a second
   * agent on this key would take it over meanwhile. Refusing to start instead left no agent at all.
   */
  warning: string | undefined;
  #held = false;
  readonly #onExit = () => this.release();

  private constructor(path: string) {
    this.path = path;
  }

  /** Takes the lock of the identity at `keyPath`, or throws naming the agent that holds it. */
  static acquire(keyPath: string): IdentityLock {
    const lock = new IdentityLock(`${keyPath}.lock`);
    const me: Holder = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    if (heldHere.has(lock.path)) {
      throw new UsepodError(
        'USEPOD_IDENTITY_IN_USE',
        `another agent in this process is running with identity ${keyPath}; stop it first`,
        { user: true },
      );
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(lock.path, 'wx', 0o600);
        let failed: NodeJS.ErrnoException | undefined;
        try {
          writeSync(fd, `${JSON.stringify(me)}\n`);
        } catch (err) {
          failed = err as NodeJS.ErrnoException;
        } finally {
          closeSync(fd);
        }
        // The file made exclusively is the lock; its line only tells a later agent who holds it.
        if (failed && FULL.has(failed.code ?? '')) {
          lock.warning = `the identity lock ${lock.path} could not record this agent (${failed.code}): another agent started on this key now would not be refused; free space on its disk`;
        } else if (failed) {
          // No empty lock is left behind.
          unlinkSync(lock.path);
          throw failed;
        }
        lock.#held = true;
        heldHere.add(lock.path);
        process.once('exit', lock.#onExit);
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new UsepodError(
            'USEPOD_IDENTITY_IO',
            `cannot create ${lock.path}: ${(err as Error).message}`,
            {
              user: true,
              cause: err,
            },
          );
        }
      }
      const holder = readHolder(lock.path);
      // Held by a live agent on this machine: refuse. Otherwise (a crash left it, or it is unreadable): take it.
      if (holder && holder.pid !== process.pid && holder.host === me.host && alive(holder.pid)) {
        throw new UsepodError(
          'USEPOD_IDENTITY_IN_USE',
          `another agent (pid ${holder.pid}, started ${holder.started}) is running with identity ${keyPath}; stop it first, or remove ${lock.path} if no agent runs`,
          { user: true },
        );
      }
      try {
        unlinkSync(lock.path);
      } catch {
        // gone already: the next attempt creates it
      }
    }
    throw new UsepodError(
      'USEPOD_IDENTITY_IN_USE',
      `could not take ${lock.path}: another agent is starting with the same identity`,
      {
        user: true,
      },
    );
  }

  /** Removes the lock if this process holds it. Idempotent. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    heldHere.delete(this.path);
    process.off('exit', this.#onExit);
    let holder: Holder | undefined;
    try {
      holder = readHolder(this.path);
    } catch {
      // Replaced by something that is no lock (a FIFO, a link): not ours to remove, and stop must not throw.
      return;
    }
    if (holder && holder.pid !== process.pid) return;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}
