import { definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  contextWindowOf,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  promGauge,
  readText,
  sendRequest,
  UsepodError,
} from '@usepod-agent/core/backend';
import { z } from 'zod';

/**
 * llama.cpp `llama-server` (ENGINES.md section 2). 503 `unavailable_error`
 * while loading; the served window from `meta.n_ctx` or `/props` (never
 * `n_ctx_train`); router mode's `/models` with `status.value`; load from
 * `/slots`, else `/metrics` when the server runs with `--metrics`.
 */
export const LLAMACPP_PORTS = [8080, 9931] as const;

export interface LlamacppBackendOptions extends Omit<OpenAICompatibleOptions, 'kind'> {
  /** Router mode: also offer models that are not loaded (the server autoloads them). */
  includeUnloaded?: boolean;
}

interface RouterModel {
  id?: string;
  status?: { value?: string };
  meta?: Record<string, unknown> | null;
}

export class LlamacppBackend extends OpenAICompatibleBackend {
  readonly #includeUnloaded: boolean;

  constructor(opts: LlamacppBackendOptions) {
    super({ ...opts, kind: 'llamacpp' });
    this.#includeUnloaded = opts.includeUnloaded ?? false;
  }

  protected override async checkHealth(signal: AbortSignal): Promise<void> {
    const res = await sendRequest(this.pool, this.endpoint('/health'), {
      method: 'GET',
      headers: this.headers(),
      signal,
    });
    const body = await readText(res.body, 4096);
    if (res.status === 503)
      throw new UsepodError('USEPOD_BACKEND_UNREACHABLE', 'loading model (/health answered 503)');
    if (res.status !== 200)
      throw new UsepodError('USEPOD_BACKEND_HTTP', `/health answered ${res.status}: ${body.slice(0, 200)}`);
    // Anthropic /v1/messages since late Nov 2025 (build numbers past ~b7200; unconfirmed, so a 404
    // from /v1/messages still falls back to translation in the executor).
    const build = /^b(\d+)/.exec((await this.#props(signal))?.build_info ?? '');
    this.anthropicNative = build !== null && Number(build[1]) >= 7200;
  }

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const list = await this.getJson<{ data?: (RouterModel & Record<string, unknown>)[] }>(
      '/v1/models',
      signal,
    );
    const data = list.data ?? [];
    const routerMode = data.some((m) => m.status && typeof m.status === 'object');
    const out: BackendModel[] = [];
    if (routerMode) {
      for (const m of data) {
        if (typeof m.id !== 'string') continue;
        const state = m.status?.value;
        const servable =
          state === 'loaded' || state === 'sleeping' || (this.#includeUnloaded && state === 'unloaded');
        if (!servable) continue;
        // Router entries carry no `meta`, and the router's own /props says n_ctx 0: a loaded model's window
        // and slots come from `/props?model=<id>`, proxied to that model's server (server-models.cpp).
        const props = state === 'unloaded' ? undefined : await this.#props(signal, m.id);
        const cw = contextWindowOf(m) ?? positive(props?.default_generation_settings?.n_ctx);
        const slots = positive(props?.total_slots);
        out.push({ id: m.id, ...(cw ? { contextWindow: cw } : {}), ...(slots ? { capacity: slots } : {}) });
      }
      return out;
    }
    let propsCtx: number | undefined;
    for (const m of data) {
      if (typeof m.id !== 'string') continue;
      let cw = contextWindowOf(m);
      if (cw === undefined) {
        propsCtx ??= await this.#propsContext(signal);
        cw = propsCtx;
      }
      out.push(cw ? { id: m.id, contextWindow: cw } : { id: m.id });
    }
    return out;
  }

  #props(signal: AbortSignal, model?: string) {
    return this.getJson<{
      default_generation_settings?: { n_ctx?: number };
      total_slots?: number;
      build_info?: string;
    }>(model === undefined ? '/props' : `/props?model=${encodeURIComponent(model)}`, signal).catch(
      () => undefined,
    );
  }

  async #propsContext(signal: AbortSignal): Promise<number | undefined> {
    const props = await this.#props(signal);
    const n = props?.default_generation_settings?.n_ctx;
    return typeof n === 'number' && n > 0 ? n : undefined;
  }

  protected override async readLoad(signal: AbortSignal): Promise<BackendLoad | undefined> {
    const slots = await this.getJson<{ is_processing?: boolean }[]>('/slots', signal).catch(() => undefined);
    if (Array.isArray(slots)) {
      return { capacity: slots.length, running: slots.filter((s) => s.is_processing).length };
    }
    const res = await sendRequest(this.pool, this.endpoint('/metrics'), {
      method: 'GET',
      headers: this.headers(),
      signal,
    });
    const text = await readText(res.body, 1024 * 1024);
    if (res.status !== 200) return undefined; // 501 without --metrics
    const running = promGauge(text, 'llamacpp:requests_processing');
    const waiting = promGauge(text, 'llamacpp:requests_deferred');
    return { ...(running === undefined ? {} : { running }), ...(waiting === undefined ? {} : { waiting }) };
  }
}

function positive(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-llamacpp',
  apiVersion: 1,
  kinds: ['llamacpp'],
  apply(_hooks, ctx) {
    ctx.registerBackend('llamacpp', {
      title: 'llama.cpp',
      options: z.strictObject({
        /** Router mode: also offer models the server would autoload. */
        include_unloaded: z.boolean().optional(),
      }),
      create: (entry, bctx) =>
        new LlamacppBackend({
          ...optionsFromEntry('llamacpp', entry, bctx),
          ...(entry.options?.include_unloaded === true ? { includeUnloaded: true } : {}),
        }),
      requires: 'url',
      defaultPorts: LLAMACPP_PORTS,
      processNames: ['llama-server'],
      // Without --alias, llama-server lists the path given to -m as the model's id.
      modelNaming: 'start llama-server with --alias NAME',
      priority: 20,
    });
  },
}));
