import { definePlugin } from '@usepod-agent/core';
import {
  type BackendModel,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  UsepodError,
} from '@usepod-agent/core/backend';

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

/** Rounds up, ignoring binary floating-point dust: 3e-7 * 1e12 is 300000.00000000006, which is 300000. */
function ceilMicro(x: number): number {
  return Math.ceil(x - 1e-6);
}

/** USD per token (OpenRouter's `pricing.prompt`) to micro-USDC per 1M tokens, with markup, rounded up. */
export function microPer1M(usdPerToken: unknown, markup: number): number | undefined {
  const v = typeof usdPerToken === 'string' ? Number(usdPerToken) : usdPerToken;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return undefined;
  return ceilMicro(v * 1e12 * (1 + markup));
}

export class RemoteBackend extends OpenAICompatibleBackend {
  readonly #markup: number;

  constructor(opts: RemoteBackendOptions) {
    // The base URL already ends in /v1 (or the provider's equivalent).
    super({ ...opts, apiPrefix: '' });
    this.#markup = opts.markup ?? 0;
  }

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const list = await this.getJson<{ data?: unknown }>('/models', signal);
    const out: BackendModel[] = [];
    for (const card of (Array.isArray(list?.data) ? list.data : []) as Record<string, unknown>[]) {
      if (!card || typeof card.id !== 'string') continue;
      const spec = card.model_spec as VeniceSpec | undefined;
      // Venice marks a model that cannot serve now.
      if (spec?.offline === true) continue;
      const m: BackendModel = { id: card.id };
      const ctx = card.context_length ?? spec?.availableContextTokens;
      if (typeof ctx === 'number' && ctx > 0) m.contextWindow = ctx;
      const price = this.#upstreamPrice(card, spec);
      if (price) m.upstreamPrice = price;
      out.push(m);
    }
    return out;
  }

  /** OpenRouter: `pricing.{prompt,completion}` in USD per token; Venice: `model_spec.pricing.{input,output}.usd` per 1M. */
  #upstreamPrice(card: Record<string, unknown>, spec: VeniceSpec | undefined) {
    const perToken = card.pricing as { prompt?: unknown; completion?: unknown } | undefined;
    let input = microPer1M(perToken?.prompt, this.#markup);
    let output = microPer1M(perToken?.completion, this.#markup);
    if (input === undefined || output === undefined) {
      input = microPer1MFromPerMillion(spec?.pricing?.input?.usd, this.#markup);
      output = microPer1MFromPerMillion(spec?.pricing?.output?.usd, this.#markup);
    }
    return input && output ? { input_per_1m: input, output_per_1m: output } : undefined;
  }
}

interface VeniceSpec {
  offline?: boolean;
  availableContextTokens?: number;
  pricing?: { input?: { usd?: unknown }; output?: { usd?: unknown } };
}

/** USD per 1M tokens (Venice) to micro-USDC per 1M tokens, with markup, rounded up. */
export function microPer1MFromPerMillion(usdPerMillion: unknown, markup: number): number | undefined {
  const v = typeof usdPerMillion === 'string' ? Number(usdPerMillion) : usdPerMillion;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return undefined;
  return ceilMicro(v * 1e6 * (1 + markup));
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-openai-compatible',
  apiVersion: 1,
  kinds: ['openrouter', 'venice', 'openai'],
  apply(_hooks, ctx) {
    for (const kind of ['openrouter', 'venice', 'openai']) {
      const preset = PRESETS[kind];
      ctx.registerBackend(kind, {
        title: kind === 'openai' ? 'OpenAI-compatible API' : kind === 'venice' ? 'Venice' : 'OpenRouter',
        // A preset knows its address and needs the key; the generic kind needs its address.
        requires: preset ? 'api_key' : 'url',
        remote: true,
        // Remote pass-throughs come after every engine on this machine serving the same model.
        priority: 1000,
        create: (entry, bctx) => {
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
        },
      });
    }
  },
}));
