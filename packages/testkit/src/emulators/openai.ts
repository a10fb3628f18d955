import type { ServerResponse } from 'node:http';
import { type EmulatedModel, type EmulatorOptions, EngineEmulator, json, type Route } from './base.js';
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
  /**
   * Whose model cards and streams: `openrouter` (`pricing` per token, `: OPENROUTER PROCESSING` comments),
   * `venice` (`model_spec.pricing.{input,output}.usd` per 1M, `availableContextTokens`, `offline`), or
   * `generic` (default).
   */
  flavor?: 'generic' | 'openrouter' | 'venice';
}

export class OpenAIEmulator extends EngineEmulator {
  readonly kind = 'openai';
  readonly prefix: string;
  pricing: Record<string, { prompt: string; completion: string }>;
  readonly flavor: 'generic' | 'openrouter' | 'venice';

  constructor(opts: OpenAIEmulatorOptions = {}) {
    super({ models: [{ id: 'openai/gpt-oss-20b', contextWindow: 131072 }], ...opts });
    this.prefix = opts.prefix ?? '/v1';
    this.pricing = opts.pricing ?? {};
    this.flavor = opts.flavor ?? 'generic';
    this.routes.set(`GET ${this.prefix}/models`, ({ req, res }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      json(res, 200, {
        object: 'list',
        data: this.models.map((m) => (this.flavor === 'venice' ? this.#veniceCard(m) : this.#card(m))),
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

  #card(m: EmulatedModel): Record<string, unknown> {
    const price = this.pricing[m.id];
    return {
      id: m.id,
      object: 'model',
      created: 1735142223,
      owned_by: 'upstream',
      ...(m.contextWindow ? { context_length: m.contextWindow } : {}),
      // OpenRouter prices carry request and reasoning components too.
      ...(price
        ? { pricing: { ...price, request: '0', image: '0', internal_reasoning: price.completion } }
        : {}),
    };
  }

  /** Venice's card (docs.venice.ai, models/list): USD per 1M tokens, the window, and an offline flag. */
  #veniceCard(m: EmulatedModel): Record<string, unknown> {
    const price = this.pricing[m.id];
    const perMillion = (v: string | undefined) => (v === undefined ? undefined : Number(v) * 1e6);
    return {
      id: m.id,
      object: 'model',
      created: 1727966436,
      owned_by: 'venice.ai',
      type: 'text',
      model_spec: {
        availableContextTokens: m.contextWindow ?? 32768,
        offline: m.offline === true,
        ...(price
          ? {
              pricing: {
                input: { usd: perMillion(price.prompt), diem: 1 },
                output: { usd: perMillion(price.completion), diem: 1 },
              },
            }
          : {}),
        capabilities: { supportsFunctionCalling: true, supportsReasoning: false },
        traits: [],
      },
    };
  }

  /** Replaces or adds a route, e.g. `route('GET', '/v1/models', ({ res }) => json(res, 200, {...}))`. */
  route(method: string, path: string, handler: Route): this {
    this.routes.set(`${method} ${path}`, handler);
    return this;
  }

  get #flavor(): ChatFlavor {
    return {
      id: () => `gen-${Math.random().toString(36).slice(2, 14)}`,
      model: (ctx) => ctx.model,
      usage: 'requested',
      ...(this.flavor === 'openrouter' ? { comment: ': OPENROUTER PROCESSING' } : {}),
      streamError: (message) => ({
        lines: [`data: ${JSON.stringify({ error: { message, code: 502 } })}\n\n`],
        done: true,
      }),
    };
  }

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: { message: 'No auth credentials found', code: 401 } });
  }
}
