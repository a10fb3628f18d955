import type { ServerResponse } from 'node:http';
import { type EmulatorOptions, EngineEmulator, json, promptTokensOf, text } from './base.js';
import { type ChatFlavor, writeAnthropicStream, writeChatStream } from './streams.js';

/**
 * vLLM (`vllm serve`) as ENGINES.md section 1 describes it: `/health` (200
 * empty, 503 once dead), `/v1/models` with `max_model_len`, streamed usage
 * only when asked, errors nested (v0.10.1+) or flat (<= v0.10.0), an error
 * inside a stream followed by `[DONE]`, `/metrics` with both KV-cache names,
 * and key checks only under `/v1`.
 */
export interface VllmOptions extends EmulatorOptions {
  /** `nested` (v0.10.1+) or `flat` (<= v0.10.0) error bodies. */
  errorShape?: 'nested' | 'flat';
  version?: string;
}

export class VllmEmulator extends EngineEmulator {
  readonly kind = 'vllm';
  errorShape: 'nested' | 'flat';
  /** `/health` answers 503: the engine died. */
  dead = false;
  /** Gauges served at /metrics. */
  metrics = { running: 0, waiting: 0, kvCache: 0.1 };
  readonly version: string;

  constructor(opts: VllmOptions = {}) {
    super({ models: [{ id: 'Qwen/Qwen3-14B', contextWindow: 32768 }], ...opts });
    this.errorShape = opts.errorShape ?? 'nested';
    this.version = opts.version ?? '0.30.0';
    const health = (res: ServerResponse) => {
      res.writeHead(this.dead ? 503 : 200, { 'content-length': 0 });
      res.end();
    };
    this.routes.set('GET /health', ({ res }) => health(res));
    this.routes.set('* /ping', ({ res }) => health(res));
    this.routes.set('GET /version', ({ res }) => json(res, 200, { version: this.version }));
    this.routes.set('GET /load', ({ res }) => json(res, 200, { server_load: this.inFlight - 1 }));
    this.routes.set('GET /metrics', ({ res }) =>
      text(res, 200, this.#metricsText(), 'text/plain; version=0.0.4'),
    );
    this.routes.set('GET /v1/models', ({ req, res }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const createdAt = 1772263347;
      json(res, 200, {
        object: 'list',
        data: this.models
          .filter((m) => m.loaded !== false)
          .map((m) => ({
            id: m.id,
            object: 'model',
            created: createdAt,
            owned_by: 'vllm',
            // A LoRA adapter's card names its base and has no window of its own (serving.py).
            root: m.parent ? `/adapters/${m.id}` : m.id,
            parent: m.parent ?? null,
            max_model_len: m.parent ? null : (m.contextWindow ?? 4096),
            permission: [
              { id: 'modelperm-0', object: 'model_permission', created: createdAt, allow_sampling: true },
            ],
          })),
      });
    });
    this.routes.set('POST /v1/chat/completions', ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      if (this.dead) return this.#error(res, 500, 'InternalServerError', 'engine is dead');
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model))
        return this.#error(res, 404, 'NotFoundError', `The model \`${model}\` does not exist.`);
      if (this.#tooLong(res, record.body ?? {}, model)) return;
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    this.routes.set('POST /v1/messages', ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model))
        return this.#error(res, 404, 'NotFoundError', `The model \`${model}\` does not exist.`);
      if (this.#tooLong(res, record.body ?? {}, model)) return;
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      // vLLM ends its Messages streams, errors included, with `data: [DONE]` (anthropic/serving.py).
      return writeAnthropicStream(ctx, { doneAfter: true });
    });
  }

  /** The window a model is served with: a LoRA adapter's is its base model's. */
  windowOf(id: string): number {
    const m = this.findModel(id);
    const base = m?.parent ? this.findModel(m.parent) : m;
    return base?.contextWindow ?? 4096;
  }

  /** A prompt plus `max_tokens` over the window: 400 before any stream (serving.py `_validate_input`). */
  #tooLong(res: ServerResponse, body: Record<string, unknown>, model: string): boolean {
    const window = this.windowOf(model);
    const prompt = promptTokensOf(body);
    const max = typeof body.max_tokens === 'number' ? body.max_tokens : 0;
    if (prompt + max <= window) return false;
    this.#error(
      res,
      400,
      'BadRequestError',
      `This model's maximum context length is ${window} tokens. However, you requested ${prompt + max} tokens (${prompt} in the messages, ${max} in the completion). Please reduce the length of the messages or completion.`,
    );
    return true;
  }

  #flavor: ChatFlavor = {
    id: () => `chatcmpl-${Math.random().toString(16).slice(2, 18)}`,
    model: (ctx) => ctx.model,
    finishExtra: { stop_reason: null },
    usage: 'requested',
    comment: ': keep-alive',
    streamError: (message) => ({
      lines: [
        `data: ${JSON.stringify({ error: { message, type: 'InternalServerError', param: null, code: 500 } })}\n\n`,
      ],
      done: true,
    }),
  };

  /** The error body in this build's shape. */
  errorBody(status: number, type: string, message: string): Record<string, unknown> {
    return this.errorShape === 'flat'
      ? { object: 'error', message, type, param: null, code: status }
      : { error: { message, type, param: null, code: status } };
  }

  #error(res: ServerResponse, status: number, type: string, message: string): void {
    json(res, status, this.errorBody(status, type, message));
  }

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: 'Unauthorized' });
  }

  protected override notFound(res: ServerResponse): void {
    json(res, 404, { detail: 'Not Found' });
  }

  #metricsText(): string {
    const lines: string[] = [];
    for (const m of this.models) {
      const l = `{engine="0",model_name="${m.id}"}`;
      lines.push(`vllm:num_requests_running${l} ${this.metrics.running}`);
      lines.push(`vllm:num_requests_waiting${l} ${this.metrics.waiting}`);
      lines.push(`vllm:kv_cache_usage_perc${l} ${this.metrics.kvCache}`);
      lines.push(`vllm:gpu_cache_usage_perc${l} ${this.metrics.kvCache}`);
    }
    return `# HELP vllm:num_requests_running Number of requests in model execution batches.\n# TYPE vllm:num_requests_running gauge\n${lines.join('\n')}\n`;
  }
}
