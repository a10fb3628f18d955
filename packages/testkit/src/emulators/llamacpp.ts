import type { ServerResponse } from 'node:http';
import { type EmulatorOptions, EngineEmulator, json, promptTokensOf, text } from './base.js';
import { type ChatFlavor, writeAnthropicStream, writeChatStream } from './streams.js';

/**
 * llama.cpp `llama-server` as ENGINES.md section 2 describes it: 503
 * `unavailable_error` on every route while loading, `/v1/models` with `meta`
 * (`n_ctx` only in newer builds), `/props` and `/slots`, `/metrics` 501 unless
 * started with `--metrics`, `timings` on the last chunk, a mid-stream error
 * closing without `[DONE]`, router mode with `status.value`, and open routes
 * (`/health`, `/v1/models`) even with a key.
 */
export interface LlamacppOptions extends EmulatorOptions {
  /** Newer builds report the served `meta.n_ctx`; older ones only `/props`. */
  reportsNCtx?: boolean;
  /** `--metrics`. */
  metricsEnabled?: boolean;
  /** `--parallel`: number of slots. */
  slots?: number;
  /** Router mode (no `-m`): models carry `status.value`. */
  router?: boolean;
  /** `--no-slots`: `/slots` answers 501. */
  slotsEnabled?: boolean;
  /** Prompt tokens found in the prompt cache: Messages usage then reports only the rest as `input_tokens`. */
  cachedPromptTokens?: number;
}

export class LlamacppEmulator extends EngineEmulator {
  readonly kind = 'llamacpp';
  loading = false;
  readonly reportsNCtx: boolean;
  readonly metricsEnabled: boolean;
  readonly slots: number;
  readonly router: boolean;
  readonly slotsEnabled: boolean;
  cachedPromptTokens: number;

  constructor(opts: LlamacppOptions = {}) {
    super({
      models: [
        { id: '../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf', contextWindow: 4096, trainContext: 131072 },
      ],
      ...opts,
    });
    this.reportsNCtx = opts.reportsNCtx ?? true;
    this.metricsEnabled = opts.metricsEnabled ?? false;
    this.slots = opts.slots ?? 1;
    this.router = opts.router ?? false;
    this.slotsEnabled = opts.slotsEnabled ?? true;
    this.cachedPromptTokens = opts.cachedPromptTokens ?? 0;
    const guard = (fn: (res: ServerResponse) => void) => (res: ServerResponse) => {
      if (this.loading)
        return json(res, 503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
      fn(res);
    };
    this.routes.set('GET /health', ({ res }) => guard((r) => json(r, 200, { status: 'ok' }))(res));
    this.routes.set('GET /v1/health', ({ res }) => guard((r) => json(r, 200, { status: 'ok' }))(res));
    const models = guard((res) => json(res, 200, this.#modelList()));
    this.routes.set('GET /v1/models', ({ res }) => models(res));
    this.routes.set('GET /models', ({ res }) => models(res));
    this.routes.set('GET /props', ({ req, res, url }) =>
      guard((r) => {
        if (!this.authorized(req)) return this.unauthorized(r);
        // Router mode: the router's own props say n_ctx 0; `?model=<id>` is proxied to that model's server.
        const asked = url.searchParams.get('model');
        const m = this.router ? (asked ? this.findModel(asked) : undefined) : this.models[0];
        if (this.router && asked && (!m || m.loaded === false)) {
          return json(r, 400, {
            error: { code: 400, message: 'model is not loaded', type: 'invalid_request_error' },
          });
        }
        json(r, 200, {
          default_generation_settings: {
            id: 0,
            id_task: -1,
            n_ctx: m ? (m.contextWindow ?? 4096) : 0,
            is_processing: false,
            params: { n_predict: -1 },
          },
          total_slots: this.slots,
          model_path: m?.id,
          modalities: { vision: false },
          build_info: 'b9999-abcdef0',
          is_sleeping: false,
        });
      })(res),
    );
    this.routes.set('GET /slots', ({ req, res }) =>
      guard((r) => {
        if (!this.slotsEnabled) {
          return json(r, 501, {
            error: {
              code: 501,
              message: 'This server does not support slots endpoint.',
              type: 'not_supported_error',
            },
          });
        }
        // Like /metrics, /slots needs the key when the server has one.
        if (!this.authorized(req)) return this.unauthorized(r);
        const busy = Math.max(0, this.inFlight - 1);
        json(
          r,
          200,
          Array.from({ length: this.slots }, (_, i) => ({
            id: i,
            id_task: i < busy ? 100 + i : -1,
            n_ctx: this.models[0]?.contextWindow ?? 4096,
            is_processing: i < busy,
            next_token: { n_decoded: 0 },
          })),
        );
      })(res),
    );
    this.routes.set('GET /metrics', ({ req, res }) => {
      if (this.metricsEnabled && !this.authorized(req)) return this.unauthorized(res);
      if (!this.metricsEnabled) {
        return json(res, 501, {
          error: {
            code: 501,
            message: 'This server does not support metrics endpoint. Start it with `--metrics`',
            type: 'not_supported_error',
          },
        });
      }
      const busy = Math.max(0, this.inFlight - 1);
      text(
        res,
        200,
        `# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing ${busy}\nllamacpp:requests_deferred 0\n`,
      );
    });
    this.routes.set('POST /v1/chat/completions', ({ req, res, record }) => {
      if (this.loading)
        return json(res, 503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
      if (!this.authorized(req)) return this.unauthorized(res);
      const requested = String(record.body?.model ?? '');
      // Single-model mode never checks the request's model; router mode does.
      if (this.router && !this.findModel(requested)) {
        return json(res, 400, {
          error: { code: 400, message: 'model is not found', type: 'invalid_request_error' },
        });
      }
      const model = this.router ? requested : (this.models[0]?.id ?? requested);
      if (this.#tooLong(res, record.body ?? {}, model)) return;
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    this.routes.set('POST /v1/messages', ({ req, res, record }) => {
      if (this.loading)
        return json(res, 503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
      if (!this.authorized(req)) return this.unauthorized(res);
      const model = this.router ? String(record.body?.model ?? '') : (this.models[0]?.id ?? '');
      if (this.#tooLong(res, record.body ?? {}, model)) return;
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      // An error is `event: error` with the flat `{code, message, type}` (no `error` key, no type "error").
      return writeAnthropicStream(ctx, {
        cachedPromptTokens: this.cachedPromptTokens,
        errorData: (message) => ({ code: 500, message, type: 'server_error' }),
      });
    });
  }

  /** The prompt over the slot's context: 400 `exceed_context_size_error` with the counts. */
  #tooLong(res: ServerResponse, body: Record<string, unknown>, model: string): boolean {
    const nCtx = this.findModel(model)?.contextWindow ?? this.models[0]?.contextWindow ?? 4096;
    const prompt = promptTokensOf(body);
    if (prompt <= nCtx) return false;
    json(res, 400, {
      error: {
        code: 400,
        message: `request (${prompt} tokens) exceeds the available context size (${nCtx} tokens), try increasing it`,
        type: 'exceed_context_size_error',
        n_prompt_tokens: prompt,
        n_ctx: nCtx,
      },
    });
    return true;
  }

  #modelList(): unknown {
    if (this.router) {
      // Router entries carry only these fields, no `meta` (server-models.cpp `get_router_models`).
      return {
        object: 'list',
        data: this.models.map((m) => ({
          id: m.id,
          object: 'model',
          owned_by: 'llamacpp',
          created: 1735142223,
          status: { value: m.loaded === false ? 'unloaded' : 'loaded' },
        })),
      };
    }
    return {
      object: 'list',
      data: this.models.map((m) => ({
        id: m.id,
        object: 'model',
        architecture: { input_modalities: ['text'], output_modalities: ['text'] },
        created: 1735142223,
        owned_by: 'llamacpp',
        meta: {
          vocab_type: 2,
          n_vocab: 128256,
          n_ctx_train: m.trainContext ?? 131072,
          ...(this.reportsNCtx ? { n_ctx: m.contextWindow ?? 4096 } : {}),
          n_embd: 4096,
          n_params: 8030261312,
          size: 4912898304,
        },
      })),
      models: this.models.map((m) => ({ name: m.id, model: m.id, capabilities: ['completion'] })),
    };
  }

  #flavor: ChatFlavor = {
    id: () => `chatcmpl-${Math.random().toString(36).slice(2, 14)}`,
    model: (ctx) => ctx.model,
    systemFingerprint: () => 'b9999-abcdef0',
    // The usage chunk comes with or without include_usage (REAL-ENGINES.md).
    usage: 'always',
    timings: true,
    firstDelta: { role: 'assistant', content: null },
    comment: ':',
    streamError: (message) => ({
      lines: [`data: ${JSON.stringify({ error: { code: 500, message, type: 'server_error' } })}\n\n`],
      done: false,
    }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: { message: 'Invalid API Key', type: 'authentication_error', code: 401 } });
  }
}
