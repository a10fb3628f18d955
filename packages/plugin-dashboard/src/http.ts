import type { ServerResponse } from 'node:http';
import type { StatusRequest } from '@usepod-agent/core';
import type { z } from 'zod';

/** JSON answers and the page's event stream. */

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(body);
}

/** A POST's JSON body checked by `schema`, or one line saying what is wrong (never the input itself). */
export function readJson<S extends z.ZodType>(body: Buffer, schema: S): z.output<S> | { error: string } {
  let value: unknown = {};
  if (body.length > 0) {
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      return { error: 'the body is not JSON' };
    }
  }
  const r = schema.safeParse(value);
  if (r.success) return r.data as z.output<S>;
  const issue = r.error.issues[0];
  return { error: `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}` };
}

/** Pages open at once; more is a mistake or an attack, not an operator. */
const MAX_STREAMS = 16;
/** The state is looked at this often; sent when it changed, and at least every KEEPALIVE_MS. */
const TICK_MS = 1_000;
const KEEPALIVE_MS = 15_000;
/** After an event, the next send waits at least this (a burst of jobs is one update). */
const SOON_MS = 150;

/**
 * Server-sent events for the page (`/api/events`): the state document when it changed, made once per
 * tick for every open page (never once per page), ticking only while a page is open.
 */
export class EventStreams {
  readonly #make: () => string;
  readonly #open = new Set<ServerResponse>();
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #last = '';
  #lastAt = 0;

  constructor(make: () => string) {
    this.#make = make;
  }

  open(req: StatusRequest, res: ServerResponse): void {
    if (this.#open.size >= MAX_STREAMS) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end('too many pages open\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    res.write(`event: state\ndata: ${this.#make()}\n\n`);
    this.#open.add(res);
    req.signal.addEventListener('abort', () => {
      this.#open.delete(res);
      if (this.#open.size === 0) this.#stop();
    });
    this.#timer ??= setInterval(() => this.#send(false), TICK_MS);
    this.#timer.unref();
  }

  /** Something happened: send soon rather than at the next tick. */
  nudge(): void {
    if (this.#open.size === 0 || this.#soon) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#send(false);
    }, SOON_MS);
    this.#soon.unref();
  }

  #send(force: boolean): void {
    if (this.#open.size === 0) return;
    const data = this.#make();
    const now = Date.now();
    // `at` changes each time: compare without it.
    const key = data.replace(/^\{"at":"[^"]*",/, '{');
    if (!force && key === this.#last && now - this.#lastAt < KEEPALIVE_MS) return;
    this.#last = key;
    this.#lastAt = now;
    const frame = `event: state\ndata: ${data}\n\n`;
    for (const res of this.#open) {
      // A page that stopped reading is dropped, not buffered for.
      if (res.writableLength > 1024 * 1024) res.destroy();
      else res.write(frame);
    }
  }

  #stop(): void {
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    this.#timer = undefined;
    this.#soon = undefined;
  }

  close(): void {
    this.#stop();
    for (const res of this.#open) res.end();
    this.#open.clear();
  }
}
