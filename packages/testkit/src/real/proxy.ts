import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { ConformanceEmulator } from '../conformance.js';
import { type Behavior, type RequestRecord, readRecord, watchAbort } from '../emulators/base.js';
import { LocalHttpServer } from '../local-server.js';
import { EventLog } from '../wait.js';

/**
 * A recording proxy in front of a real engine, so the conformance suite (which scripts faults through
 * `behave()`) can run against the engine itself: normal traffic is the engine's own, byte for byte; a
 * scripted fault (a status, a hang, a stall after the first chunk, an error event) is injected here.
 */
export class RealEngineProxy implements ConformanceEmulator {
  readonly requests = new EventLog<RequestRecord>();
  readonly aborted = new EventLog<RequestRecord>();
  readonly #upstream: URL;
  readonly #server: LocalHttpServer;
  readonly #queue: { behavior: Behavior; times: number }[] = [];
  #nextId = 1;

  constructor(upstream: string) {
    this.#upstream = new URL(upstream);
    this.#server = new LocalHttpServer((req, res) => void this.#handle(req, res));
  }

  get url(): string {
    return this.#server.url;
  }

  async start(port = 0): Promise<this> {
    await this.#server.start(port);
    return this;
  }

  behave(behavior: Behavior, times = 1): this {
    this.#queue.push({ behavior, times });
    return this;
  }

  reset(): void {
    this.#queue.length = 0;
  }

  goDown(): Promise<void> {
    return this.#server.goDown();
  }

  comeUp(): Promise<void> {
    return this.#server.comeUp();
  }

  close(): Promise<void> {
    return this.#server.close();
  }

  #take(path: string, method: string): Behavior {
    // Only generation requests are scripted; probes always reach the engine.
    if (method !== 'POST' || !/\/(chat\/completions|completions|messages)$/.test(path))
      return { kind: 'normal' };
    const q = this.#queue[0];
    if (!q) return { kind: 'normal' };
    if (--q.times <= 0) this.#queue.shift();
    return q.behavior;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { record, url, raw } = await readRecord(req, this.#nextId++);
    watchAbort(res, record, this.aborted);
    this.requests.push(record);
    const behavior = this.#take(record.path, record.method);
    if (behavior.kind === 'hang') return;
    if (behavior.kind === 'status') {
      const text = Buffer.from(behavior.body);
      record.sent.push(text);
      res.writeHead(behavior.status, {
        'content-type': behavior.contentType ?? 'application/json',
        'content-length': text.length,
      });
      res.end(text);
      return;
    }
    const open = () => !res.destroyed && !res.writableEnded;
    const upstream = request(
      {
        host: this.#upstream.hostname,
        port: this.#upstream.port,
        method: record.method,
        path: `${url.pathname}${url.search}`,
        headers: { ...req.headers, host: this.#upstream.host },
      },
      (up) => {
        if (!open()) return void up.destroy();
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.flushHeaders();
        let first = true;
        // `slow`: the engine's own events, each held `tokenDelayMs` after the one before, as a slow
        // engine would send them (split where an event ends: the bytes stay the engine's, in order).
        let paced = Promise.resolve();
        const pace = (d: Buffer, send: (part: Buffer) => void): void => {
          if (behavior.kind !== 'slow') {
            send(d);
            return;
          }
          const delay = behavior.tokenDelayMs;
          for (const part of eventParts(d))
            paced = paced.then(() => new Promise((r) => setTimeout(r, delay))).then(() => send(part));
        };
        up.on('data', (d: Buffer) => {
          // Chunks parsed from one packet still arrive after an injected end or the client leaving:
          // writing them would throw ERR_STREAM_WRITE_AFTER_END (issue 28).
          if (!open()) return;
          if (!first && behavior.kind === 'hang-after-first') return; // stall, connection open
          if (!first && behavior.kind === 'error-in-stream') {
            // llama.cpp's own shape of an error after the 200: an error chunk, no [DONE].
            const err = Buffer.from(
              `data: ${JSON.stringify({ error: { code: 500, message: behavior.message ?? 'injected engine failure', type: 'server_error' } })}\n\n`,
            );
            record.sent.push(err);
            res.end(err);
            up.destroy();
            return;
          }
          first = false;
          pace(d, (part) => {
            if (!open()) return;
            record.sent.push(part);
            res.write(part);
          });
        });
        up.on('end', () => {
          void paced.then(() => {
            if (behavior.kind !== 'hang-after-first' && open()) res.end();
          });
        });
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    // The client going away closes the engine's request too: that is what frees its slot.
    res.on('close', () => upstream.destroy());
    upstream.end(raw);
  }
}

/** A chunk cut after each event's blank line (`\n\n`), the rest kept whole: no byte added or lost. */
function eventParts(d: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = d.indexOf('\n\n'); at !== -1; at = d.indexOf('\n\n', from)) {
    parts.push(d.subarray(from, at + 2));
    from = at + 2;
  }
  if (from < d.length) parts.push(d.subarray(from));
  return parts;
}
