import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { delay, type EmulatorOptions, EngineEmulator, json, text, tokenText, writeAndDrain } from './base.js';
import { type ChatFlavor, writeAnthropicStream, writeChatStream } from './streams.js';

/**
 * Ollama as ENGINES.md section 4 describes it: `GET /` "Ollama is running",
 * `/api/version`, installed models at `/api/tags`, loaded ones at `/api/ps`
 * with `context_length`, `/api/show` with the training maximum, `/v1` chat
 * with usage only when asked, a `/v1` mid-stream error as an empty chunk and a
 * close without `[DONE]`, 404 for unknown models, 503 when the queue is full.
 */
export interface OllamaOptions extends EmulatorOptions {
  version?: string;
  /** `OLLAMA_NUM_PARALLEL`. */
  numParallel?: number;
  /** `OLLAMA_MAX_QUEUE`: requests past the running ones and this many queued get 503 `server busy`. */
  maxQueue?: number;
  /** How long the first request to a model not loaded waits for the load (there is no loading state). */
  loadDelayMs?: number;
}

export class OllamaEmulator extends EngineEmulator {
  readonly kind = 'ollama';
  readonly version: string;
  readonly numParallel: number;
  maxQueue: number;
  loadDelayMs: number;
  #seq = 0;
  #generating = 0;

  constructor(opts: OllamaOptions = {}) {
    super({ models: [{ id: 'llama3.2:3b', contextWindow: 4096, trainContext: 131072 }], ...opts });
    this.version = opts.version ?? '0.33.0';
    this.numParallel = opts.numParallel ?? 1;
    this.maxQueue = opts.maxQueue ?? 512;
    this.loadDelayMs = opts.loadDelayMs ?? 50;
    this.routes.set('GET /', ({ res }) => text(res, 200, 'Ollama is running'));
    this.routes.set('HEAD /', ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end();
    });
    this.routes.set('GET /api/version', ({ res }) => json(res, 200, { version: this.version }));
    this.routes.set('GET /api/tags', ({ res }) =>
      json(res, 200, {
        models: this.models.map((m) => ({
          name: m.id,
          model: m.id,
          modified_at: '2025-05-04T17:37:44.706015396-07:00',
          size: 2019393189,
          digest: createHash('sha256').update(m.id).digest('hex'),
          details: { format: 'gguf', family: 'llama', parameter_size: '3.2B', quantization_level: 'Q4_K_M' },
          ...(m.remote
            ? { remote_model: m.id.replace(/-cloud$/, ''), remote_host: 'https://ollama.com:443' }
            : {}),
        })),
      }),
    );
    this.routes.set('GET /api/ps', ({ res }) =>
      json(res, 200, {
        models: this.models
          .filter((m) => m.loaded !== false)
          .map((m) => ({
            name: m.id,
            model: m.id,
            size: 6591830464,
            digest: 'c6eb396dbd59',
            details: { format: 'gguf', family: 'llama' },
            expires_at: '2099-10-17T16:47:07.93355-07:00',
            size_vram: 5333539264,
            context_length: m.contextWindow ?? 4096,
          })),
      }),
    );
    this.routes.set('POST /api/show', ({ res, record }) => {
      const m = this.findModel(String(record.body?.model ?? record.body?.name ?? ''));
      if (!m) return json(res, 404, { error: `model '${String(record.body?.model)}' not found` });
      json(res, 200, {
        details: { format: 'gguf', family: 'llama' },
        model_info: { 'general.architecture': 'llama', 'llama.context_length': m.trainContext ?? 131072 },
        // A Modelfile's PARAMETER lines, as text.
        ...(m.numCtx
          ? {
              parameters: `num_ctx                        ${m.numCtx}\nstop                           "<|eot_id|>"`,
            }
          : {}),
        capabilities: m.type === 'embedding' ? ['embedding'] : ['completion', 'tools'],
      });
    });
    this.routes.set('GET /v1/models', ({ res }) =>
      json(res, 200, {
        object: 'list',
        data: this.models.map((m) => ({
          id: m.id,
          object: 'model',
          created: 1746405464,
          owned_by: 'library',
        })),
      }),
    );
    this.routes.set('POST /v1/chat/completions', async ({ req, res, record }) => {
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model)) {
        return json(res, 404, {
          error: {
            message: `model "${model}" not found, try pulling it first`,
            type: 'not_found_error',
            param: null,
            code: null,
          },
        });
      }
      if (this.#busy(res)) return;
      await this.#load(model);
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
    this.routes.set('POST /v1/messages', async ({ req, res, record }) => {
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model)) {
        return json(res, 404, {
          type: 'error',
          error: { type: 'not_found_error', message: `model '${model}' not found` },
        });
      }
      if (this.#busy(res)) return;
      await this.#load(model);
      const ctx = this.streamContext(req, res, record, model);
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeAnthropicStream(ctx, { noErrorEvents: true });
    });
    this.routes.set('POST /api/chat', async ({ req, res, record }) => {
      const model = String(record.body?.model ?? '');
      if (!this.findModel(model)) return json(res, 404, { error: `model '${model}' not found` });
      const ctx = this.streamContext(req, res, record, model);
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (let i = 0; i < ctx.tokens; i++) {
        if (ctx.gone()) return;
        await writeAndDrain(
          res,
          `${JSON.stringify({ model, created_at: new Date().toISOString(), message: { role: 'assistant', content: tokenText(i) }, done: false })}\n`,
        );
      }
      res.end(
        `${JSON.stringify({ model, created_at: new Date().toISOString(), message: { role: 'assistant', content: '' }, done: true, done_reason: 'length', total_duration: 4883583458, load_duration: 1334875, prompt_eval_count: ctx.promptTokens, prompt_eval_duration: 342546000, eval_count: ctx.tokens, eval_duration: 4535599000 })}\n`,
      );
    });
  }

  /** The first request to a model not loaded waits for the load, which then shows in /api/ps. */
  async #load(id: string): Promise<void> {
    const m = this.findModel(id);
    if (m?.loaded !== false) return;
    await delay(this.loadDelayMs);
    m.loaded = true;
  }

  /** The scheduler's queue is full: 503, two spaces and all (server/sched.go). Counts the request otherwise. */
  #busy(res: ServerResponse): boolean {
    if (this.#generating >= this.numParallel + this.maxQueue) {
      json(res, 503, { error: 'server busy, please try again.  maximum pending requests exceeded' });
      return true;
    }
    this.#generating++;
    res.on('close', () => this.#generating--);
    return false;
  }

  #flavor: ChatFlavor = {
    id: () => `chatcmpl-${this.#seq++ % 999}`,
    model: (ctx) => ctx.model,
    systemFingerprint: () => 'fp_ollama',
    usage: 'requested',
    wholeToolCalls: true,
    // An empty chunk, then the connection closes: no finish chunk, no [DONE].
    streamError: () => ({ lines: ['data: {}\n\n'], done: false }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: 'unauthorized' });
  }

  protected override notFound(res: ServerResponse): void {
    text(res, 404, '404 page not found');
  }
}
