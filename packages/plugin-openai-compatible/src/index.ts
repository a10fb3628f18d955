import {
  type BackendModel,
  definePlugin,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  PLUGIN_API_VERSION,
  UsepodError,
} from '@usepod-agent/core';

/**
 * Remote pass-through to an OpenAI-compatible API: presets for OpenRouter and
 * Venice, and a generic `openai` kind taking `url`. The operator's API key is
 * the only identity sent upstream: no client headers are forwarded.
 */
export const PRESETS: Record<string, { url: string; headers?: Record<string, string> }> = {
  openrouter: {
    url: 'https://openrouter.ai/api/v1',
    headers: { 'x-title': 'Use Pod provider agent', 'http-referer': 'https://usepod.ai' },
  },
  venice: { url: 'https://api.venice.ai/api/v1' },
};

export interface RemoteBackendOptions extends Omit<OpenAICompatibleOptions, 'kind' | 'apiPrefix'> {
  kind: string;
  /** Operator margin on top of the upstream's own price (0.05 = 5%). */
  markup?: number;
}

/** USD per token (OpenRouter's `pricing.prompt`) to micro-USDC per 1M tokens, with markup, rounded up. */
export function microPer1M(usdPerToken: unknown, markup: number): number | undefined {
  const v = typeof usdPerToken === 'string' ? Number(usdPerToken) : usdPerToken;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return undefined;
  return Math.ceil(v * 1e12 * (1 + markup));
}

export class RemoteBackend extends OpenAICompatibleBackend {
  readonly #markup: number;

  constructor(opts: RemoteBackendOptions) {
    // The base URL already ends in /v1 (or the provider's equivalent).
    super({ ...opts, apiPrefix: '' });
    this.#markup = opts.markup ?? 0;
  }

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const list = await this.getJson<{ data?: Record<string, unknown>[] }>('/models', signal);
    const out: BackendModel[] = [];
    for (const card of list.data ?? []) {
      if (typeof card.id !== 'string') continue;
      const m: BackendModel = { id: card.id };
      const ctx =
        card.context_length ??
        (card.model_spec as { availableContextTokens?: number } | undefined)?.availableContextTokens;
      if (typeof ctx === 'number' && ctx > 0) m.contextWindow = ctx;
      const pricing = card.pricing as { prompt?: unknown; completion?: unknown } | undefined;
      const input = microPer1M(pricing?.prompt, this.#markup);
      const output = microPer1M(pricing?.completion, this.#markup);
      if (input && output) m.upstreamPrice = { input_per_1m: input, output_per_1m: output };
      out.push(m);
    }
    return out;
  }
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-openai-compatible',
  apiVersion: PLUGIN_API_VERSION,
  kinds: ['openrouter', 'venice', 'openai'],
  apply(_hooks, ctx) {
    for (const kind of ['openrouter', 'venice', 'openai']) {
      ctx.registerBackend(kind, (entry, bctx) => {
        const preset = PRESETS[kind];
        const url = entry.url ?? preset?.url;
        if (!url) {
          throw new UsepodError('USEPOD_CONFIG_INVALID', `backend of kind "${kind}" needs a url`, {
            user: true,
          });
        }
        return new RemoteBackend({
          kind,
          url,
          log: bctx.log,
          ...(entry.name ? { label: entry.name } : {}),
          ...(bctx.apiKey ? { apiKey: bctx.apiKey } : {}),
          ...(entry.models ? { models: entry.models } : {}),
          ...(preset?.headers ? { headers: preset.headers } : {}),
          ...(entry.markup !== undefined ? { markup: entry.markup } : {}),
          probeTimeoutMs: 15_000,
        });
      });
    }
  },
}));
