import type { Readable } from 'node:stream';

/** Errors a body emits after its reader is done with it (an abort's reason, `aborted` on destroy). */
function ignoreLateError(): void {}

/**
 * Makes a body safe to drop at any moment: HTTP bodies emit an error when destroyed before their
 * end, and an `error` event with no listener ends the process (issue 14: a coordinator's routine close
 * during streams crashed the agent). Idempotent; readers still get errors through their own listeners.
 */
export function guardBody<T extends Readable>(body: T): T {
  if (!body.listeners('error').includes(ignoreLateError)) body.on('error', ignoreLateError);
  return body;
}

/** Drops a body and its connection, whoever is (or is no longer) listening. */
export function discard(body: Readable): void {
  guardBody(body).destroy();
}

/**
 * What a chunk handler answers: `true` to go on, `false` to stop reading (the body is destroyed),
 * or a promise to wait for before reading again (backpressure: the body buffers up to its
 * high-water mark, then stops pulling from its socket).
 */
export type ChunkVerdict = boolean | Promise<void>;

/**
 * Reads a body to its end, handing each read to `onChunk`. Like `for await`, each read takes
 * everything buffered since the last one, so under load several engine events leave in one frame;
 * unlike it, no promise is made per chunk and no async iterator is set up per job (a few tens of µs
 * before the first frame on a cold agent, and CPU on every chunk; decision 0004). Resolves at the end
 * of the body or when `onChunk` says stop; rejects when the body fails or closes before its end.
 */
export function readChunks(body: Readable, onChunk: (chunk: Buffer) => ChunkVerdict): Promise<void> {
  guardBody(body);
  return new Promise<void>((resolve, reject) => {
    let waiting = false;
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('readable', pump);
      body.off('end', onEnd);
      body.off('error', finish);
      body.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onEnd = (): void => finish();
    const onClose = (): void => {
      if (!body.readableEnded) finish(new Error('the upstream body closed before its end'));
    };
    const resume = (): void => {
      waiting = false;
      pump();
    };
    function pump(): void {
      if (waiting || settled) return;
      for (let chunk = body.read() as Buffer | null; chunk !== null; chunk = body.read() as Buffer | null) {
        const verdict = onChunk(chunk);
        if (verdict === true) continue;
        if (verdict === false) {
          finish();
          discard(body);
          return;
        }
        waiting = true;
        verdict.then(resume, finish);
        return;
      }
    }
    body.on('readable', pump);
    body.on('end', onEnd);
    body.on('error', finish);
    body.on('close', onClose);
    if (body.readableEnded) finish();
    else if (body.destroyed) onClose();
  });
}
