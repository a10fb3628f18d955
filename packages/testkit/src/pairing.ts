import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventLog } from './wait.js';

/**
 * The coordinator's device-flow pairing endpoints (PROTOCOL.md section 9):
 * `POST /v1/host/pair/issue` and `POST /v1/host/pair/poll`. A test approves or
 * expires a code, or lets it approve itself after some polls.
 */
export interface ModelConfigEntry {
  model_id: string;
  input_per_1m: number;
  output_per_1m: number;
  max_concurrent: number;
}

export interface PairingOptions {
  /** Approve automatically after this many polls (default: wait for `approve()`). */
  approveAfterPolls?: number;
  providerId?: string;
  hostToken?: string;
  modelConfig?: ModelConfigEntry[];
  /** Answer `expired` to every poll. */
  expireAll?: boolean;
  /** Answer `issue` with this status and body instead (failure tests). */
  issueFailure?: { status: number; body: string };
}

interface Pending {
  code: string;
  pubkey: string;
  status: 'pending' | 'active' | 'expired';
  polls: number;
}

export class PairingServer {
  readonly issued = new EventLog<{ code: string; pubkey: string }>();
  readonly polls = new EventLog<Record<string, unknown>>();
  readonly #server: Server;
  readonly #opts: PairingOptions;
  readonly #byToken = new Map<string, Pending>();

  private constructor(opts: PairingOptions) {
    this.#opts = opts;
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  static async start(opts: PairingOptions = {}): Promise<PairingServer> {
    const s = new PairingServer(opts);
    await new Promise<void>((resolve) => s.#server.listen(0, '127.0.0.1', resolve));
    return s;
  }

  /** The HTTPS base URL's stand-in: `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get hostToken(): string {
    return this.#opts.hostToken ?? 'host_tok_3b8f0c2d9e7a41f6';
  }

  approve(code?: string): void {
    for (const p of this.#byToken.values()) if (!code || p.code === code) p.status = 'active';
  }

  expire(): void {
    for (const p of this.#byToken.values()) p.status = 'expired';
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      return send(res, 400, { error: 'invalid JSON' });
    }
    if (req.method === 'POST' && req.url === '/v1/host/pair/issue') {
      if (this.#opts.issueFailure) {
        res.writeHead(this.#opts.issueFailure.status, { 'content-type': 'application/json' });
        res.end(this.#opts.issueFailure.body);
        return;
      }
      if (typeof body.agent_pubkey !== 'string') return send(res, 400, { error: 'agent_pubkey is required' });
      const code = `${randomBytes(2).toString('hex').toUpperCase()}-${randomBytes(2).toString('hex').toUpperCase()}`;
      const token = randomBytes(16).toString('hex');
      this.#byToken.set(token, {
        code,
        pubkey: body.agent_pubkey,
        status: this.#opts.expireAll ? 'expired' : 'pending',
        polls: 0,
      });
      this.issued.push({ code, pubkey: body.agent_pubkey });
      return send(res, 200, {
        pair_code: code,
        poll_token: token,
        expires_at: new Date(Date.now() + 600_000).toISOString(),
      });
    }
    if (req.method === 'POST' && req.url === '/v1/host/pair/poll') {
      this.polls.push(body);
      const p = this.#byToken.get(String(body.poll_token));
      if (!p) return send(res, 404, { error: 'unknown poll_token' });
      p.polls++;
      if (
        p.status === 'pending' &&
        this.#opts.approveAfterPolls !== undefined &&
        p.polls >= this.#opts.approveAfterPolls
      ) {
        p.status = 'active';
      }
      if (p.status === 'active') {
        return send(res, 200, {
          status: 'active',
          host_token: this.hostToken,
          provider_id: this.#opts.providerId ?? 'prov_paired_1',
          model_config: this.#opts.modelConfig ?? [],
        });
      }
      return send(res, 200, { status: p.status });
    }
    send(res, 404, { error: 'not found' });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
