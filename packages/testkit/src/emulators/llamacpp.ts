import type { ServerResponse } from 'node:http';
import { type EmulatorOptions, EngineEmulator, json, text } from './base.js';
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
}

export class LlamacppEmulator extends EngineEmulator {
  readonly kind = 'llamacpp';
  loading = false;
  readonly reportsNCtx: boolean;
  readonly metricsEnabled: boolean;
  readonly slots: number;
  readonly router: boolean;

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
    this.routes.set('GET /props', ({ req, res }) =>
      guard((r) => {
        if (!this.authorized(req)) return this.unauthorized(r);
        const m = this.models[0];
        json(r, 200, {
          default_generation_settings: {
            id: 0,
            id_task: -1,
            n_ctx: m?.contextWindow ?? 4096,
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
    this.routes.set('GET /slots', ({ res }) =>
      guard((r) => {
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
    this.routes.set('GET /metrics', ({ res }) => {
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
      const ctx = this.streamContext(
        req,
        res,
        record,
        this.router ? requested : (this.models[0]?.id ?? requested),
      );
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    this.routes.set('POST /v1/messages', ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const ctx = this.streamContext(req, res, record, String(record.body?.model ?? this.models[0]?.id));
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeAnthropicStream(ctx);
    });
  }

  #modelList(): unknown {
    if (this.router) {
      return {
        data: this.models.map((m) => ({
          id: m.id,
          path: `/models/${m.id}.gguf`,
          status: {
            value: m.loaded === false ? 'unloaded' : 'loaded',
            args: ['llama-server', '-ctx', String(m.contextWindow ?? 4096)],
          },
          ...(m.loaded === false
            ? {}
            : { meta: { n_ctx_train: m.trainContext ?? 131072, n_ctx: m.contextWindow ?? 4096 } }),
          architecture: { input_modalities: ['text'], output_modalities: ['text'] },
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
    usage: 'requested',
    timings: true,
    streamError: (message) => ({
      lines: [`data: ${JSON.stringify({ error: { code: 500, message, type: 'server_error' } })}\n\n`],
      done: false,
    }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: { message: 'Invalid API Key', type: 'authentication_error', code: 401 } });
  }
}
