import type { ServerResponse } from 'node:http';
import { type EmulatorOptions, EngineEmulator, json, type Route } from './base.js';
import { type ChatFlavor, writeAnthropicStream, writeChatStream } from './streams.js';

/**
 * A generic OpenAI-compatible API (the shape OpenRouter, Venice and most
 * gateways share), with its routes under a configurable prefix and every route
 * replaceable: a test can make one answer JSON, an event stream, an error, a
 * hang or a controlled stream with `route()`.
 */
export interface OpenAIEmulatorOptions extends EmulatorOptions {
  /** Path prefix of the API (`/v1`, or `/api/v1` for OpenRouter). */
  prefix?: string;
  /** OpenRouter-style `pricing` on each model card, USD per token. */
  pricing?: Record<string, { prompt: string; completion: string }>;
}

export class OpenAIEmulator extends EngineEmulator {
  readonly kind = 'openai';
  readonly prefix: string;
  pricing: Record<string, { prompt: string; completion: string }>;

  constructor(opts: OpenAIEmulatorOptions = {}) {
    super({ models: [{ id: 'openai/gpt-oss-20b', contextWindow: 131072 }], ...opts });
    this.prefix = opts.prefix ?? '/v1';
    this.pricing = opts.pricing ?? {};
    this.routes.set(`GET ${this.prefix}/models`, ({ req, res }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      json(res, 200, {
        object: 'list',
        data: this.models.map((m) => ({
          id: m.id,
          object: 'model',
          created: 1735142223,
          owned_by: 'upstream',
          ...(m.contextWindow ? { context_length: m.contextWindow } : {}),
          ...(this.pricing[m.id] ? { pricing: this.pricing[m.id] } : {}),
        })),
      });
    });
    this.routes.set(`POST ${this.prefix}/chat/completions`, ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model)) {
        return json(res, 404, {
          error: { message: `model ${model} not found`, type: 'not_found_error', code: 'model_not_found' },
        });
      }
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    this.routes.set(`POST ${this.prefix}/messages`, ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const ctx = this.streamContext(req, res, record, String(record.body?.model ?? ''));
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeAnthropicStream(ctx);
    });
  }

  /** Replaces or adds a route, e.g. `route('GET', '/v1/models', ({ res }) => json(res, 200, {...}))`. */
  route(method: string, path: string, handler: Route): this {
    this.routes.set(`${method} ${path}`, handler);
    return this;
  }

  #flavor: ChatFlavor = {
    id: () => `gen-${Math.random().toString(36).slice(2, 14)}`,
    model: (ctx) => ctx.model,
    usage: 'requested',
    streamError: (message) => ({
      lines: [`data: ${JSON.stringify({ error: { message, code: 502 } })}\n\n`],
      done: true,
    }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: { message: 'No auth credentials found', code: 401 } });
  }
}
