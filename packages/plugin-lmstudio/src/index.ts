import { definePlugin } from '@usepod-agent/core';
import {
  type BackendLoad,
  type BackendModel,
  OpenAICompatibleBackend,
  type OpenAICompatibleOptions,
  optionsFromEntry,
} from '@usepod-agent/core/backend';
import { z } from 'zod';

/**
 * LM Studio (ENGINES.md section 3). No health route: the model routes are the
 * probe. Loaded LLMs come from `/api/v1/models` (0.4+) `loaded_instances`, or
 * `/api/v0/models` `state`; `/v1/models` alone would list every download under
 * JIT. Embedding models are never offered for chat.
 */
export interface LmstudioBackendOptions extends Omit<OpenAICompatibleOptions, 'kind'> {
  /** Also offer downloaded LLMs that JIT loading would load on first use. */
  includeJit?: boolean;
  /** The window models are loaded with, for 0.3.x servers, which do not report it (option `context_length`). */
  contextLength?: number;
}

interface V1Model {
  type?: string;
  key?: string;
  loaded_instances?: { id?: string; config?: { context_length?: number; parallel?: number } }[];
  max_context_length?: number;
}

interface V0Model {
  id?: string;
  type?: string;
  state?: string;
  max_context_length?: number;
}

export class LmstudioBackend extends OpenAICompatibleBackend {
  readonly #includeJit: boolean;
  #parallel: number | undefined;

  constructor(opts: LmstudioBackendOptions) {
    super({ ...opts, kind: 'lmstudio' });
    this.#includeJit = opts.includeJit ?? false;
    this.#contextLength = opts.contextLength;
  }

  readonly #contextLength: number | undefined;

  protected override async listModels(signal: AbortSignal): Promise<BackendModel[]> {
    const v1 = await this.getJson<{ models?: V1Model[] }>('/api/v1/models', signal).catch(() => undefined);
    if (v1 && Array.isArray(v1.models)) return this.#fromV1(v1.models);
    const v0 = await this.getJson<{ data?: V0Model[] }>('/api/v0/models', signal).catch(() => undefined);
    if (v0 && Array.isArray(v0.data)) return this.#fromV0(v0.data);
    // Oldest builds: only /v1/models, which cannot tell loaded from downloaded.
    return super.listModels(signal);
  }

  /**
   * Only `loaded_instances[].config.context_length` is a served window; `max_context_length` is the
   * model's training maximum and is never advertised as one (ENGINES.md section 7).
   */
  #fromV1(models: V1Model[]): BackendModel[] {
    const out: BackendModel[] = [];
    let parallel = 0;
    for (const m of models) {
      if (m.type !== 'llm' || !m.key) continue;
      const inst = m.loaded_instances ?? [];
      if (inst.length > 0) {
        // Several instances of one model serve it with the smallest of their windows.
        const windows = inst.flatMap((i) => (i.config?.context_length ? [i.config.context_length] : []));
        // Each instance runs `parallel` requests at once: the model's capacity is their sum.
        const capacity = inst.reduce((n, i) => n + (i.config?.parallel ?? 4), 0);
        parallel += capacity;
        out.push({
          id: m.key,
          capacity,
          ...(windows.length > 0 ? { contextWindow: Math.min(...windows) } : {}),
        });
      } else if (this.#includeJit) {
        out.push({ id: m.key });
      }
    }
    this.#parallel = parallel || undefined;
    return out;
  }

  /** 0.3.x: `max_context_length` is the training maximum, not the loaded window, so no window is advertised. */
  #fromV0(models: V0Model[]): BackendModel[] {
    const out: BackendModel[] = [];
    for (const m of models) {
      if ((m.type !== 'llm' && m.type !== 'vlm') || !m.id) continue;
      if (m.state !== 'loaded' && !this.#includeJit) continue;
      out.push(this.#contextLength ? { id: m.id, contextWindow: this.#contextLength } : { id: m.id });
    }
    return out;
  }

  protected override async readLoad(): Promise<BackendLoad | undefined> {
    return this.#parallel ? { capacity: this.#parallel } : undefined;
  }
}

export default definePlugin(() => ({
  name: '@usepod-agent/plugin-lmstudio',
  apiVersion: 1,
  kinds: ['lmstudio'],
  apply(_hooks, ctx) {
    ctx.registerBackend('lmstudio', {
      title: 'LM Studio',
      options: z.strictObject({
        /** Also offer downloaded LLMs that JIT loading loads on first use. */
        include_jit: z.boolean().optional(),
        /** 0.3.x servers: the window models are loaded with (they report only the training maximum). */
        context_length: z.number().int().positive().optional(),
      }),
      create: (entry, bctx) => {
        const o = entry.options ?? {};
        return new LmstudioBackend({
          ...optionsFromEntry('lmstudio', entry, bctx),
          ...(o.include_jit === true ? { includeJit: true } : {}),
          ...(o.context_length !== undefined ? { contextLength: o.context_length } : {}),
        });
      },
      requires: 'url',
      defaultPorts: [1234],
      processNames: ['LM Studio', 'lms', 'llmworker'],
      priority: 30,
    });
  },
}));
