import type { ServerResponse } from 'node:http';
import { type EmulatorOptions, EngineEmulator, json, promptTokensOf } from './base.js';
import { type ChatFlavor, writeAnthropicStream, writeChatStream } from './streams.js';

/**
 * LM Studio as ENGINES.md section 3 describes it: no health route, `/v1/models`
 * listing every download under JIT, `/api/v0/models` with `state`,
 * `/api/v1/models` (0.4+) with `loaded_instances`, `system_fingerprint` = model
 * id, usage only when asked (0.3.18+), 400 `model_not_found`, and optional API
 * tokens (then `/v1/models` needs one too).
 */
export interface LmstudioOptions extends EmulatorOptions {
  /** 0.4.x serves `/api/v1/models`; 0.3.x only `/api/v0/models`. */
  apiV1?: boolean;
  /** `parallel` of each loaded instance. */
  parallel?: number;
}

export class LmstudioEmulator extends EngineEmulator {
  readonly kind = 'lmstudio';
  readonly apiV1: boolean;
  readonly parallel: number;
  /** Requests a model's one instance runs at once, as 0.4's listing tells it (0.3.x tells nothing). */
  get capacity(): number | undefined {
    return this.apiV1 ? this.parallel : undefined;
  }

  constructor(opts: LmstudioOptions = {}) {
    super({ models: [{ id: 'qwen3-8b', contextWindow: 4096, trainContext: 40960 }], ...opts });
    this.apiV1 = opts.apiV1 ?? true;
    this.parallel = opts.parallel ?? 4;
    const guarded =
      (fn: (res: ServerResponse) => void) =>
      (req: Parameters<EngineEmulator['authorized']>[0], res: ServerResponse) =>
        this.authorized(req) ? fn(res) : this.unauthorized(res);
    this.routes.set('GET /v1/models', ({ req, res }) =>
      guarded((r) =>
        json(r, 200, {
          data: this.models.map((m) => ({ id: m.id, object: 'model', owned_by: 'organization_owner' })),
          object: 'list',
        }),
      )(req, res),
    );
    this.routes.set('GET /api/v0/models', ({ req, res }) =>
      guarded((r) =>
        json(r, 200, {
          object: 'list',
          data: this.models.map((m) => ({
            id: m.id,
            object: 'model',
            type: m.type === 'embedding' ? 'embeddings' : 'llm',
            publisher: 'lmstudio-community',
            arch: 'qwen3',
            compatibility_type: 'gguf',
            quantization: 'Q4_K_M',
            state: m.loaded === false ? 'not-loaded' : 'loaded',
            max_context_length: m.trainContext ?? 32768,
          })),
        }),
      )(req, res),
    );
    if (this.apiV1) {
      this.routes.set('GET /api/v1/models', ({ req, res }) =>
        guarded((r) =>
          json(r, 200, {
            models: this.models.map((m) => ({
              type: m.type === 'embedding' ? 'embedding' : 'llm',
              key: m.id,
              architecture: 'qwen3',
              quantization: { name: 'Q4_K_M', bits_per_weight: 4 },
              loaded_instances:
                m.loaded === false
                  ? []
                  : [
                      {
                        id: m.id,
                        config: {
                          context_length: m.contextWindow ?? 4096,
                          eval_batch_size: 512,
                          parallel: this.parallel,
                          flash_attention: true,
                        },
                      },
                    ],
              max_context_length: m.trainContext ?? 32768,
              format: 'gguf',
            })),
          }),
        )(req, res),
      );
    }
    this.routes.set('POST /v1/chat/completions', ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model)) {
        return json(res, 400, {
          error: {
            message: `Invalid model identifier "${model}". Please specify a valid downloaded model (e.g., ${this.models[0]?.id ?? 'none'}).`,
            type: 'invalid_request_error',
            param: 'model',
            code: 'model_not_found',
          },
        });
      }
      if (this.#tooLong(res, record.body ?? {}, model)) return;
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    // Anthropic /v1/messages since 0.4.1; 0.3.x answers it like any unknown route (200 with an error).
    if (this.apiV1) {
      this.routes.set('POST /v1/messages', ({ req, res, record }) => {
        if (!this.authorized(req)) return this.unauthorized(res);
        const ctx = this.streamContext(req, res, record, String(record.body?.model ?? ''));
        if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
        return writeAnthropicStream(ctx);
      });
    }
  }

  /** Unknown routes answer 200 with an error body (ENGINES.md section 7). */
  protected override notFound(res: ServerResponse, method = 'GET', path = '/'): void {
    json(res, 200, { error: `Unexpected endpoint or method. (${method} ${path})` });
  }

  /** Over the loaded window: 400 with LM Studio's words. */
  #tooLong(res: ServerResponse, body: Record<string, unknown>, model: string): boolean {
    const window = this.findModel(model)?.contextWindow ?? 4096;
    const prompt = promptTokensOf(body);
    if (prompt <= window) return false;
    json(res, 400, {
      error: `Trying to keep the first ${prompt} tokens when context the overflows. However, the model is loaded with context length of only ${window} tokens, which is not enough. Try to load the model with a larger context length, or provide a shorter input`,
    });
    return true;
  }

  #flavor: ChatFlavor = {
    id: () => `chatcmpl-${Math.random().toString(36).slice(2, 22)}`,
    model: (ctx) => ctx.model,
    systemFingerprint: (ctx) => ctx.model,
    usage: 'requested',
    streamError: (message) => ({
      lines: [`data: ${JSON.stringify({ error: { message, type: 'server_error' } })}\n\n`],
      done: false,
    }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, {
      error: {
        type: 'invalid_request',
        code: 'invalid_api_key',
        message: 'An LM Studio API token is required to make requests to this server.',
      },
    });
  }
}
