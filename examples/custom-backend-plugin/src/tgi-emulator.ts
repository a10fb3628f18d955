import type { ServerResponse } from 'node:http';
import {
  type ChatFlavor,
  type EmulatorOptions,
  EngineEmulator,
  json,
  text,
  writeChatStream,
} from '@usepod-agent/testkit';

/**
 * A Text Generation Inference emulator built on the testkit's EngineEmulator:
 * `/health`, `/info`, `/metrics`, and OpenAI-style chat streaming with TGI's
 * flat `{"error", "error_type"}` errors.
 */
export class TgiEmulator extends EngineEmulator {
  readonly kind = 'tgi';
  /** `--max-concurrent-requests` (TGI's default, 128): more at once are refused, 429. */
  readonly capacity = 128;

  constructor(opts: EmulatorOptions = {}) {
    super({ models: [{ id: 'HuggingFaceH4/zephyr-7b-beta', contextWindow: 4096 }], ...opts });
    this.routes.set('GET /health', ({ res }) => {
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    });
    this.routes.set('GET /info', ({ res }) =>
      json(res, 200, {
        model_id: this.models[0]?.id,
        model_sha: null,
        model_pipeline_tag: 'text-generation',
        max_concurrent_requests: this.capacity,
        max_best_of: 2,
        max_stop_sequences: 4,
        max_input_tokens: (this.models[0]?.contextWindow ?? 4096) - 1,
        max_total_tokens: this.models[0]?.contextWindow ?? 4096,
        router: 'text-generation-router',
        version: '3.3.0',
      }),
    );
    this.routes.set('GET /metrics', ({ res }) =>
      text(res, 200, `tgi_queue_size 0\ntgi_batch_current_size ${Math.max(0, this.inFlight - 1)}\n`),
    );
    this.routes.set('POST /v1/chat/completions', ({ req, res, record }) => {
      if (!this.authorized(req)) return this.unauthorized(res);
      // TGI serves one model and accepts "tgi" or any name for it.
      const ctx = this.streamContext(req, res, record, this.models[0]?.id ?? 'tgi');
      if (ctx.behavior.kind === 'controlled') return this.handOver(ctx);
      return writeChatStream(ctx, this.#flavor);
    });
  }

  #flavor: ChatFlavor = {
    id: () => '',
    model: (ctx) => ctx.model,
    systemFingerprint: () => '3.3.0-sha-0000000',
    usage: 'requested',
    streamError: (message) => ({
      lines: [`data: ${JSON.stringify({ error: message, error_type: 'generation' })}\n\n`],
      done: false,
    }),
  };

  protected unauthorized(res: ServerResponse): void {
    json(res, 401, { error: 'Unauthorized', error_type: 'authentication' });
  }
}
