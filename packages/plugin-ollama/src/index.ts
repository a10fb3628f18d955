import { definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  getJson,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
  readText,
  sendRequest,
  versionAtLeast,
} from '@usepod-agent/core/backend';
import { z } from 'zod';

/**
 * Ollama. Health from `/api/version`; installed models from `/api/tags`
 * (cloud entries left out), their context from `/api/ps` when loaded, else the
 * training maximum from `/api/show` capped by the default `num_ctx`;
 * embedding-only models are never offered for chat (ENGINES.md section 4).
 */
export interface OllamaBackendOptions extends Omit<OpenAICompatibleOptions, 'kind'> {
  /** Context Ollama allocates when the model is not loaded yet (`OLLAMA_CONTEXT_LENGTH`); default 4096. */
  defaultNumCtx?: number;
  /** `OLLAMA_NUM_PARALLEL` of the server, for load-aware routing; default 1. */
  numParallel?: number;
}

interface TagEntry {
  name?: string;
  model?: string;
  digest?: string;
  remote_model?: string;
  remote_host?: string;
}

interface ShowInfo {
  trainContext: number | undefined;
  /** A Modelfile `PARAMETER num_ctx`: the window Ollama allocates for this model when it loads it. */
  numCtx: number | undefined;
  embeddingOnly: boolean;
}

export class OllamaBackend extends OpenAICompatibleBackend {
  readonly #defaultNumCtx: number;
  readonly #numParallel: number;
  /** `/api/show` answers by digest: they change only when the model is re-pulled. */
  readonly #show = new Map<string, ShowInfo>();
  #loaded = 0;

  constructor(opts: OllamaBackendOptions) {
    super({ ...opts, kind: 'ollama' });
    this.#defaultNumCtx = opts.defaultNumCtx ?? 4096;
    this.#numParallel = opts.numParallel ?? 1;
  }

  protected override async checkHealth(signal: AbortSignal): Promise<void> {
    const v = await this.getJson<{ version?: string }>('/api/version', signal);
    // Anthropic /v1/messages since v0.14.0.
    this.anthropicNative = typeof v.version === 'string' && versionAtLeast(v.version, '0.14.0');
  }

  async #showInfo(name: string, digest: string | undefined, signal: AbortSignal): Promise<ShowInfo> {
    const key = digest ?? name;
    const cached = this.#show.get(key);
    if (cached) return cached;
    const res = await sendRequest(this.pool, this.endpoint('/api/show'), {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/json' }),
      body: JSON.stringify({ model: name }),
      signal,
    });
    const body = await readText(res.body, 4 * 1024 * 1024);
    let info: ShowInfo = { trainContext: undefined, numCtx: undefined, embeddingOnly: false };
    if (res.status === 200) {
      const show = JSON.parse(body) as {
        model_info?: Record<string, unknown>;
        capabilities?: unknown;
        parameters?: unknown;
      };
      const mi = show.model_info ?? {};
      const arch = mi['general.architecture'];
      const ctx = typeof arch === 'string' ? mi[`${arch}.context_length`] : undefined;
      const caps = Array.isArray(show.capabilities) ? show.capabilities : [];
      const numCtx =
        typeof show.parameters === 'string' ? /^num_ctx\s+(\d+)\s*$/m.exec(show.parameters)?.[1] : undefined;
      info = {
        trainContext: typeof ctx === 'number' ? ctx : undefined,
        numCtx: numCtx ? Number(numCtx) : undefined,
        embeddingOnly: caps.includes('embedding') && !caps.includes('completion'),
      };
      this.#show.set(key, info);
    }
    return info;
  }

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const [tags, ps] = await Promise.all([
      this.getJson<{ models?: TagEntry[] }>('/api/tags', signal),
      getJson<{ models?: { name?: string; context_length?: number }[] }>(
        this.pool,
        this.endpoint('/api/ps'),
        this.headers(),
        signal,
      ).catch(() => ({ models: [] })),
    ]);
    const loaded = new Map<string, number | undefined>();
    for (const m of ps.models ?? []) if (m.name) loaded.set(m.name, m.context_length);
    this.#loaded = loaded.size;
    const out: BackendModel[] = [];
    for (const t of tags.models ?? []) {
      const name = t.name ?? t.model;
      if (!name) continue;
      // Cloud models run on ollama.com, not on this GPU.
      if (t.remote_model || t.remote_host || name.endsWith('-cloud')) continue;
      const info = await this.#showInfo(name, t.digest, signal);
      if (info.embeddingOnly) continue;
      // Loaded: what Ollama allocated. Not loaded: what it will allocate, the Modelfile's num_ctx first,
      // else the server default; never more than the model was trained for.
      const allocated = loaded.get(name);
      const planned = info.numCtx ?? this.#defaultNumCtx;
      const contextWindow = allocated ?? (info.trainContext ? Math.min(info.trainContext, planned) : planned);
      // Ollama runs OLLAMA_NUM_PARALLEL requests per loaded model: that is this model's capacity.
      out.push({ id: name, contextWindow, capacity: this.#numParallel });
    }
    return out;
  }

  protected override async readLoad(): Promise<BackendLoad | undefined> {
    return { capacity: this.#numParallel * Math.max(1, this.#loaded) };
  }
}

/** `options.num_ctx`, else `OLLAMA_CONTEXT_LENGTH` when the agent shares the server's environment. */
function defaultNumCtx(option: unknown): { defaultNumCtx?: number } {
  if (typeof option === 'number' && Number.isInteger(option) && option > 0) return { defaultNumCtx: option };
  const env = Number(process.env.OLLAMA_CONTEXT_LENGTH);
  return Number.isInteger(env) && env > 0 ? { defaultNumCtx: env } : {};
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-ollama',
  apiVersion: 1,
  kinds: ['ollama'],
  apply(_hooks, ctx) {
    ctx.registerBackend('ollama', {
      title: 'Ollama',
      options: z.strictObject({
        /** Context Ollama allocates for a model not loaded yet, when its Modelfile sets none. */
        num_ctx: z.number().int().positive().optional(),
        /** The server's OLLAMA_NUM_PARALLEL: each loaded model runs this many requests at once. */
        num_parallel: z.number().int().min(1).max(256).optional(),
      }),
      create: (entry, bctx) => {
        const o = entry.options ?? {};
        return new OllamaBackend({
          ...optionsFromEntry('ollama', entry, bctx),
          ...defaultNumCtx(o.num_ctx),
          ...(o.num_parallel !== undefined ? { numParallel: o.num_parallel } : {}),
        });
      },
      requires: 'url',
      defaultPorts: [11434],
      processNames: ['ollama'],
      priority: 40,
    });
  },
}));
