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

/** `default_generation_settings.params` of b11669, field for field (values are its defaults). */
const GENERATION_PARAMS = {
  seed: 4294967295,
  temperature: 0.8,
  dynatemp_range: 0,
  dynatemp_exponent: 1,
  top_k: 40,
  top_p: 0.95,
  min_p: 0.05,
  top_n_sigma: -1,
  xtc_probability: 0,
  xtc_threshold: 0.1,
  typical_p: 1,
  repeat_last_n: 64,
  repeat_penalty: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  dry_multiplier: 0,
  dry_base: 1.75,
  dry_allowed_length: 2,
  dry_penalty_last_n: 64,
  mirostat: 0,
  mirostat_tau: 5,
  mirostat_eta: 0.1,
  adaptive_target: -1,
  adaptive_decay: 0.9,
  max_tokens: -1,
  n_predict: -1,
  n_keep: 0,
  n_discard: 0,
  ignore_eos: false,
  stream: false,
  n_probs: 0,
  min_keep: 0,
  chat_format: 'Content-only',
  reasoning_format: 'none',
  reasoning_in_content: false,
  generation_prompt: '',
  samplers: ['penalties', 'dry', 'top_n_sigma', 'top_k', 'typ_p', 'top_p', 'min_p', 'xtc', 'temperature'],
  'speculative.types': 'none',
  timings_per_token: false,
  post_sampling_probs: false,
  backend_sampling: false,
  lora: [],
};

export class LlamacppEmulator extends EngineEmulator {
  readonly kind = 'llamacpp';
  loading = false;
  readonly reportsNCtx: boolean;
  readonly metricsEnabled: boolean;
  readonly slots: number;
  /** Requests it runs at once (the conformance suite holds plugins to it): its slots. */
  get capacity(): number {
    return this.slots;
  }
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
        // The fields of b11669's /props (REAL-ENGINES.md); `params` abridged to what matters here.
        json(r, 200, {
          default_generation_settings: {
            params: GENERATION_PARAMS,
            n_ctx: m ? (m.contextWindow ?? 4096) : 0,
          },
          total_slots: this.slots,
          model_alias: m?.id,
          model_ftype: 'Q4_K - Medium',
          model_path: m?.id,
          modalities: { vision: false, video: false, audio: false },
          media_marker: '<__media_x__>',
          endpoint_slots: this.slotsEnabled,
          endpoint_props: false,
          endpoint_metrics: this.metricsEnabled,
          ui: true,
          ui_settings: {},
          chat_template: '{{ messages }}',
          chat_template_caps: {
            supports_object_arguments: false,
            supports_parallel_tool_calls: false,
            supports_preserve_reasoning: false,
            supports_reasoning_effort: false,
            supports_string_content: true,
            supports_system_role: true,
            supports_tool_calls: false,
            supports_tools: false,
            supports_typed_content: false,
          },
          bos_token: '<s>',
          eos_token: '</s>',
          build_info: 'b9999-abcdef0',
          is_sleeping: false,
          cors_proxy_enabled: false,
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
          // An idle slot lists four fields; a busy one adds its task.
          Array.from({ length: this.slots }, (_, i) => ({
            id: i,
            n_ctx: this.models[0]?.contextWindow ?? 4096,
            speculative: false,
            is_processing: i < busy,
            ...(i < busy ? { id_task: 100 + i, n_prompt_tokens: 10, next_token: [{ n_decoded: 0 }] } : {}),
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
      if (this.#badJson(res, record.rawBody, record.body)) return;
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
        idPrefix: 'chatcmpl-',
        deltaInputUsage: false,
        cacheReadAlways: true,
        cachedPromptTokens: this.cachedPromptTokens,
        errorData: (message) => ({ code: 500, message, type: 'server_error' }),
      });
    });
  }

  /** A body that is not JSON: 400 `invalid_request_error` with the parser's words. */
  #badJson(res: ServerResponse, raw: string, body: unknown): boolean {
    if (!raw || body !== undefined) return false;
    json(res, 400, {
      error: {
        code: 400,
        message: `[json.exception.parse_error.101] parse error at line 1, column 2: syntax error while parsing object key`,
        type: 'invalid_request_error',
      },
    });
    return true;
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
    // b11669's single-model listing: an Ollama-style `models` array beside the OpenAI `data` one.
    return {
      models: this.models.map((m) => ({
        name: m.id,
        model: m.id,
        modified_at: '',
        size: '',
        digest: '',
        type: 'model',
        description: '',
        tags: [''],
        capabilities: ['completion'],
        parameters: '',
        details: {
          parent_model: '',
          format: 'gguf',
          family: '',
          families: [''],
          parameter_size: '',
          quantization_level: '',
        },
      })),
      object: 'list',
      data: this.models.map((m) => ({
        id: m.id,
        aliases: [m.id],
        tags: [],
        object: 'model',
        architecture: { input_modalities: ['text'], output_modalities: ['text'] },
        created: 1735142223,
        owned_by: 'llamacpp',
        meta: {
          vocab_type: 2,
          n_vocab: 128256,
          ...(this.reportsNCtx ? { n_ctx: m.contextWindow ?? 4096 } : {}),
          n_ctx_train: m.trainContext ?? 131072,
          n_embd: 4096,
          n_params: 8030261312,
          size: 4912898304,
          ftype: 'Q4_K - Medium',
        },
      })),
    };
  }

  #flavor: ChatFlavor = {
    id: () => `chatcmpl-${Math.random().toString(36).slice(2, 14)}`,
    model: (ctx) => ctx.model,
    systemFingerprint: () => 'b9999-abcdef0',
    contentType: 'text/event-stream',
    logprobs: false,
    usageDetails: true,
    // Checked against b11669: a usage chunk only with include_usage; without it, `timings` on the finish chunk.
    usage: 'requested',
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
