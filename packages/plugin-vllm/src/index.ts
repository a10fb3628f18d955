import { definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  contextWindowOf,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  readText,
  sendRequest,
  UsepodError,
  versionAtLeast,
} from '@usepod-agent/core/backend';

/**
 * vLLM (`vllm serve`). Health from `/health` (refused while loading, 503 once
 * the engine died), models and `max_model_len` from `/v1/models`, load from
 * the always-open `/metrics` (ENGINES.md section 1).
 */
export class VllmBackend extends OpenAICompatibleBackend {
  constructor(opts: Omit<OpenAICompatibleOptions, 'kind'>) {
    super({ ...opts, kind: 'vllm' });
  }

  protected override async checkHealth(signal: AbortSignal): Promise<void> {
    // ECONNREFUSED here means loading or down: the send() error says "cannot reach".
    const res = await sendRequest(this.pool, this.endpoint('/health'), { method: 'GET', signal });
    await readText(res.body, 1024).catch(() => '');
    if (res.status === 503)
      throw new UsepodError('USEPOD_BACKEND_UNREACHABLE', 'engine is dead (/health answered 503)');
    if (res.status !== 200) throw new UsepodError('USEPOD_BACKEND_HTTP', `/health answered ${res.status}`);
    // Anthropic /v1/messages arrived around v0.12.0 (ENGINES.md); older builds get translated jobs.
    const v = await this.getJson<{ version?: string }>('/version', signal).catch(() => undefined);
    this.anthropicNative = typeof v?.version === 'string' && versionAtLeast(v.version, '0.12.0');
  }

  /** A LoRA adapter's card has `max_model_len: null` and names its base in `parent`: its window is the base's. */
  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const list = await this.getJson<{ data?: unknown }>('/v1/models', signal);
    if (!Array.isArray(list?.data)) {
      throw new UsepodError('USEPOD_BACKEND_HTTP', '/v1/models did not return a "data" list');
    }
    const cards = (list.data as Record<string, unknown>[]).filter(
      (c): c is Record<string, unknown> & { id: string } => !!c && typeof c.id === 'string',
    );
    const windows = new Map(cards.map((c) => [c.id, contextWindowOf(c)]));
    return cards.map((c) => {
      const parent = typeof c.parent === 'string' ? c.parent : undefined;
      const window = windows.get(c.id) ?? (parent ? windows.get(parent) : undefined);
      return window ? { id: c.id, contextWindow: window } : { id: c.id };
    });
  }

  protected override async readLoad(signal: AbortSignal): Promise<BackendLoad | undefined> {
    const res = await sendRequest(this.pool, this.endpoint('/metrics'), { method: 'GET', signal });
    const body = await readText(res.body, 4 * 1024 * 1024);
    if (res.status !== 200) return undefined;
    return parseVllmMetrics(body);
  }
}

/** Sums the gauges over engines (data-parallel ranks) and models; KV usage is the highest rank's. */
export function parseVllmMetrics(text: string): BackendLoad {
  let running = 0;
  let waiting = 0;
  let kvNew: number | undefined;
  let kvOld: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.length === 0) continue;
    const m = /^(vllm:[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    switch (m[1]) {
      case 'vllm:num_requests_running':
        running += value;
        break;
      case 'vllm:num_requests_waiting':
        waiting += value;
        break;
      case 'vllm:kv_cache_usage_perc':
        kvNew = Math.max(kvNew ?? 0, value);
        break;
      case 'vllm:gpu_cache_usage_perc':
        kvOld = Math.max(kvOld ?? 0, value);
        break;
      default:
        break;
    }
  }
  const kv = kvNew ?? kvOld; // the new name wins; the deprecated one is removed in later releases
  return { running, waiting, ...(kv === undefined ? {} : { kvCacheUsage: kv }) };
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-vllm',
  apiVersion: 1,
  kinds: ['vllm'],
  apply(_hooks, ctx) {
    ctx.registerBackend('vllm', {
      title: 'vLLM',
      create: (entry, bctx) => new VllmBackend(optionsFromEntry('vllm', entry, bctx)),
      requires: 'url',
      defaultPorts: [8000],
      processNames: ['VLLM', 'vllm'],
      // Served from a local folder, a model's id is that folder's path.
      modelNaming: 'start vLLM with --served-model-name NAME',
      // Continuous batching and a KV-cache signal: first among engines serving one model.
      priority: 10,
    });
  },
}));
