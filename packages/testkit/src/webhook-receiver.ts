import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One POST a webhook receiver took in (a scripted refusal is counted but not kept). */
export interface ReceivedPost {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** How the receiver answers the next POST: a status, or a hang, or a body that never ends. */
export interface ScriptedReply {
  status: number;
  headers?: Record<string, string>;
  /** Never answer (a webhook that hangs). */
  hang?: boolean;
  /** Answer with a body that never ends, 64 KiB at a time for as long as anyone reads. */
  endless?: boolean;
}

/**
 * A webhook on 127.0.0.1 for plugins that tell the owner something (alerts, a pager): records every
 * JSON POST, answers the scripted replies first, then 200. `wait(n)` is event-driven.
 */
export class WebhookReceiver {
  readonly got: ReceivedPost[] = [];
  readonly script: ScriptedReply[] = [];
  /** Every POST, delivered or scripted away. */
  requests = 0;
  #server!: Server;
  #waiters: (() => void)[] = [];

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        text += d;
      });
      req.on('end', () => {
        this.requests++;
        const next = this.script.shift();
        if (next?.endless) {
          const chunk = Buffer.alloc(65_536, 'x');
          res.writeHead(next.status, next.headers);
          const pump = () => {
            while (!res.destroyed && res.write(chunk));
          };
          res.on('drain', pump);
          pump();
        } else if (!next?.hang) res.writeHead(next?.status ?? 200, next?.headers).end('ok');
        if (!next?.hang && (!next || next.status < 300)) {
          let body: Record<string, unknown>;
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            body = { text };
          }
          this.got.push({ path: req.url ?? '', headers: req.headers, body });
        }
        for (const w of this.#waiters.splice(0)) w();
      });
    });
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  /** Resolves once `n` posts were delivered; rejects after `ms`. */
  async wait(n: number, ms = 10_000): Promise<ReceivedPost[]> {
    const end = Date.now() + ms;
    while (this.got.length < n) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${this.got.length} of ${n} posts arrived`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, Math.min(left, 250)).unref();
      });
    }
    return this.got;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((r) => this.#server.close(() => r()));
  }
}
