import { definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  promGauge,
  readText,
  sendRequest,
  UsepodError,
} from '@usepod-agent/core/backend';

/**
 * usepod-agent-plugin-tgi: serves Hugging Face Text Generation Inference
 * through the agent. TGI serves one model, named by `GET /info` (`model_id`,
 * `max_total_tokens`, `max_concurrent_requests`), answers `GET /health` with 200
 * once the model is loaded, and streams chat through its OpenAI-compatible
 * `/v1/chat/completions`. Load comes from `/metrics` (`tgi_queue_size`,
 * `tgi_batch_current_size`).
 */
interface TgiInfo {
  model_id?: string;
  max_total_tokens?: number;
  max_concurrent_requests?: number;
  version?: string;
}

export class TgiBackend extends OpenAICompatibleBackend {
  #capacity: number | undefined;

  constructor(opts: Omit<OpenAICompatibleOptions, 'kind'>) {
    super({ ...opts, kind: 'tgi' });
  }

  protected override async checkHealth(signal: AbortSignal): Promise<void> {
    const res = await sendRequest(this.pool, this.endpoint('/health'), {
      method: 'GET',
      headers: this.headers(),
      signal,
    });
    await readText(res.body, 1024);
    if (res.status !== 200)
      throw new UsepodError(
        'USEPOD_BACKEND_UNREACHABLE',
        `TGI is not ready (/health answered ${res.status})`,
      );
  }

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const info = await this.getJson<TgiInfo>('/info', signal);
    if (!info.model_id) throw new UsepodError('USEPOD_BACKEND_HTTP', '/info has no model_id');
    this.#capacity = info.max_concurrent_requests;
    return [
      info.max_total_tokens
        ? { id: info.model_id, contextWindow: info.max_total_tokens }
        : { id: info.model_id },
    ];
  }

  protected override async readLoad(signal: AbortSignal): Promise<BackendLoad | undefined> {
    const res = await sendRequest(this.pool, this.endpoint('/metrics'), {
      method: 'GET',
      headers: this.headers(),
      signal,
    });
    const text = await readText(res.body, 1024 * 1024);
    const running = promGauge(text, 'tgi_batch_current_size');
    const waiting = promGauge(text, 'tgi_queue_size');
    return {
      ...(running === undefined ? {} : { running }),
      ...(waiting === undefined ? {} : { waiting }),
      ...(this.#capacity ? { capacity: this.#capacity } : {}),
    };
  }
}

export default definePlugin(() => ({
  name: 'usepod-agent-plugin-tgi',
  apiVersion: 1,
  core: '^0.4.0',
  kinds: ['tgi'],
  apply(_hooks, ctx) {
    ctx.registerBackend('tgi', {
      title: 'Text Generation Inference',
      create: (entry, bctx) => new TgiBackend(optionsFromEntry('tgi', entry, bctx)),
      requires: 'url',
      defaultPorts: [3000],
    });
  },
}));
