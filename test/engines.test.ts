import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isUsepodError, silentLogger } from '@usepod-agent/core';
import llamacppPlugin, { LlamacppBackend } from '@usepod-agent/plugin-llamacpp';
import lmstudioPlugin, { LmstudioBackend } from '@usepod-agent/plugin-lmstudio';
import ollamaPlugin from '@usepod-agent/plugin-ollama';
import openaiPlugin from '@usepod-agent/plugin-openai-compatible';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  createTestAgent,
  LlamacppEmulator,
  LmstudioEmulator,
  OllamaEmulator,
  OpenAIEmulator,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { installedPlugins, loadPluginForKind } from '../packages/core/src/plugins/loader.js';
import { type Rig, rig } from './helpers.js';

let r: Rig | undefined;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const c of cleanup.splice(0).reverse()) await c();
});
const ALL = [vllmPlugin, ollamaPlugin, llamacppPlugin, lmstudioPlugin, openaiPlugin];

function events(text: string): { event: string; data: Record<string, unknown> }[] {
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('event: '))
    .map((b) => {
      const [e, d] = b.split('\n');
      return { event: e!.slice(7), data: JSON.parse(d!.slice(6)) };
    });
}

describe('Anthropic-format jobs', () => {
  it('translates for an engine without /v1/messages, with stop reason and usage', async () => {
    r = await rig({ engine: await new VllmEmulator({ version: '0.10.0' }).start() });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: {
        system: 'Be brief.',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'one two three' }] }],
        max_tokens: 3,
      },
    });
    const done = await job.done();
    const upstream = r.engine.requests.items.find((q) => q.method === 'POST')!;
    expect(upstream.path).toBe('/v1/chat/completions');
    expect(upstream.body).toEqual({
      model: 'Qwen/Qwen3-14B',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'one two three' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 3,
    });
    const ev = events(job.text());
    expect(ev.map((e) => e.event)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(ev[2]!.data.delta).toEqual({ type: 'text_delta', text: 'tok0 ' });
    // The emulator counts 2 + 3 words and 5 template tokens.
    expect(ev[6]!.data).toMatchObject({
      delta: { stop_reason: 'max_tokens' },
      usage: { input_tokens: 10, output_tokens: 3 },
    });
    expect(done.tokens).toEqual({ input: 10, output: 3, input_tokens: 10, output_tokens: 3 });
  });

  it('translates tool calls both ways', async () => {
    r = await rig({ engine: await new VllmEmulator({ version: '0.10.0' }).start() });
    r.engine.behave({ kind: 'tool-call', name: 'get_weather', arguments: '{"city":"Paris"}' });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: {
        max_tokens: 100,
        tools: [
          {
            name: 'get_weather',
            description: 'Weather',
            input_schema: { type: 'object', properties: { city: { type: 'string' } } },
          },
        ],
        tool_choice: { type: 'any' },
        messages: [
          { role: 'user', content: 'weather?' },
          {
            role: 'assistant',
            content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Oslo' } }],
          },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'rain' }] },
        ],
      },
    });
    await job.done();
    const sent = r.engine.requests.items.find((q) => q.method === 'POST')!.body!;
    expect(sent.tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ]);
    expect(sent.tool_choice).toBe('required');
    expect(sent.messages).toEqual([
      { role: 'user', content: 'weather?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'toolu_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'rain' },
    ]);
    const ev = events(job.text());
    const start = ev.find((e) => e.event === 'content_block_start')!;
    expect(start.data.content_block).toMatchObject({ type: 'tool_use', name: 'get_weather' });
    const json = ev
      .filter((e) => e.event === 'content_block_delta')
      .map((e) => (e.data.delta as { partial_json: string }).partial_json);
    expect(json.join('')).toBe('{"city":"Paris"}');
    expect(ev.find((e) => e.event === 'message_delta')!.data.delta).toMatchObject({
      stop_reason: 'tool_use',
    });
  });

  it('falls back to translation when a native engine has no /v1/messages after all', async () => {
    r = await rig();
    r.engine.removeRoute('POST', '/v1/messages');
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: { messages: [{ role: 'user', content: 'x' }], max_tokens: 2 },
    });
    expect((await job.done()).type).toBe('job_done');
    expect(r.engine.requests.items.filter((q) => q.method === 'POST').map((q) => q.path)).toEqual([
      '/v1/messages',
      '/v1/chat/completions',
    ]);
    expect(job.text()).toContain('event: message_stop');
  });

  it('turns an error inside the chat stream into an Anthropic error event and job_error', async () => {
    r = await rig({ engine: await new VllmEmulator({ version: '0.10.0' }).start() });
    r.engine.behave({ kind: 'error-in-stream', afterTokens: 1, message: 'boom' });
    const job = r.session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: { messages: [], max_tokens: 5 },
    });
    const res = await job.done();
    expect(res).toMatchObject({
      type: 'job_error',
      error_code: 'internal',
      message: 'backend stream error: boom',
    });
    expect(job.text()).toContain('event: error');
    expect(job.text()).not.toContain('message_stop');
  });
});

describe('live discovery', () => {
  it('re-advertises when models or context windows change, and stops routing a model that disappeared', async () => {
    r = await rig({ timing: { discoveryIntervalMs: 30 } });
    const initial = await r.session.capabilities();
    expect((initial.models as unknown[]).length).toBe(1);
    const added = r.session.nextFrame('capabilities');
    r.engine.models = [...r.engine.models, { id: 'new/model', contextWindow: 8192 }];
    expect(((await added).models as { model_id: string }[]).map((m) => m.model_id)).toEqual([
      'Qwen/Qwen3-14B',
      'new/model',
    ]);
    const resized = r.session.nextFrame('capabilities');
    r.engine.models = r.engine.models.map((m) => (m.id === 'new/model' ? { ...m, contextWindow: 16384 } : m));
    expect(((await resized).models as { context_window: number }[])[1]!.context_window).toBe(16384);
    const removed = r.session.nextFrame('capabilities');
    r.engine.models = r.engine.models.filter((m) => m.id !== 'new/model');
    expect(((await removed).models as unknown[]).length).toBe(1);
    const res = await r.session.dispatch({ model_id: 'new/model' }).done();
    expect(res.error_code).toBe('model_not_loaded');
    expect(r.engine.requests.items.some((q) => q.method === 'POST' && q.body?.model === 'new/model')).toBe(
      false,
    );
  });

  it('advertises an empty list when the only engine dies, and the model again when it is back', async () => {
    r = await rig({ timing: { discoveryIntervalMs: 30 } });
    const empty = r.session.nextFrame('capabilities');
    await r.engine.goDown();
    expect((await empty).models).toEqual([]);
    const back = r.session.nextFrame('capabilities');
    await r.engine.comeUp();
    expect(((await back).models as unknown[]).length).toBe(1);
  });
});

describe('routing across engines', () => {
  it('sends a job to the least-loaded engine, and to the next one when the first cannot be reached', async () => {
    const a = await new VllmEmulator().start();
    const b = await new VllmEmulator().start();
    r = await rig({
      engine: a,
      extraEngines: [b],
      config: {
        backends: [
          { kind: 'vllm', url: a.url },
          { kind: 'vllm', url: b.url },
        ],
      },
    });
    a.always({ kind: 'controlled' });
    b.always({ kind: 'controlled' });
    r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const first = await Promise.race([a.controlled.waitFor(), b.controlled.waitFor()]);
    const busy = first.record.id && a.controlled.items.length === 1 ? a : b;
    const idle = busy === a ? b : a;
    r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    await idle.controlled.waitFor();
    expect(busy.controlled.items).toHaveLength(1);
    // Failover before the first byte.
    a.reset();
    b.reset();
    for (const c of [...a.controlled.items, ...b.controlled.items]) c.end('data: [DONE]\n\n');
    await idle.goDown();
    const served = await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(served.type).toBe('job_done');
  });

  it('prefers vllm over ollama when both are idle', async () => {
    const o = await new OllamaEmulator({ models: [{ id: 'shared', contextWindow: 4096 }] }).start();
    const v = await new VllmEmulator({ models: [{ id: 'shared', contextWindow: 4096 }] }).start();
    r = await rig({
      engine: v,
      extraEngines: [o],
      config: {
        backends: [
          { kind: 'ollama', url: o.url },
          { kind: 'vllm', url: v.url },
        ],
      },
    });
    for (let i = 0; i < 3; i++) await r.session.dispatch({ model_id: 'shared' }).done();
    expect(v.requests.items.filter((q) => q.path === '/v1/chat/completions')).toHaveLength(3);
    expect(o.requests.items.filter((q) => q.path === '/v1/chat/completions')).toHaveLength(0);
  });
});

describe('a config mixing every kind', () => {
  it('validates and serves a job through each engine', async () => {
    const vllm = await new VllmEmulator({
      models: [{ id: 'v-model', contextWindow: 32768 }],
      apiKey: 'vk-123456',
    }).start();
    const llama = await new LlamacppEmulator({ models: [{ id: 'l-model', contextWindow: 4096 }] }).start();
    const lms = await new LmstudioEmulator({ models: [{ id: 'lm-model', contextWindow: 8192 }] }).start();
    const oll = await new OllamaEmulator({ models: [{ id: 'o-model:1b', contextWindow: 2048 }] }).start();
    const or = await new OpenAIEmulator({
      prefix: '/api/v1',
      apiKey: 'or-key-123456',
      models: [{ id: 'or/model', contextWindow: 65536 }],
      pricing: { 'or/model': { prompt: '0.000001', completion: '0.000002' } },
    }).start();
    const gen = await new OpenAIEmulator({ models: [{ id: 'g-model' }] }).start();
    cleanup.push(async () => {
      for (const e of [llama, lms, oll, or, gen]) await e.close();
    });
    const t = await createTestAgent({
      plugins: ALL,
      env: { VLLM_KEY: 'vk-123456', OR_KEY: 'or-key-123456' },
      config: {
        backends: [
          { kind: 'vllm', url: vllm.url, api_key_env: 'VLLM_KEY' },
          { kind: 'llamacpp', url: llama.url },
          { kind: 'lmstudio', url: lms.url },
          { kind: 'ollama', url: oll.url },
          { kind: 'openrouter', url: `${or.url}/api/v1`, api_key_env: 'OR_KEY', markup: 0.05 },
          { kind: 'openai', url: `${gen.url}/v1` },
        ],
      },
    });
    cleanup.push(async () => {
      await t.close();
      await vllm.close();
    });
    await t.start();
    const s = await t.coordinator.firstAuthenticated();
    const caps = (await s.capabilities()).models as Record<string, unknown>[];
    expect(caps.map((m) => [m.model_id, m.backend, m.context_window])).toEqual([
      ['g-model', 'openai', undefined],
      ['l-model', 'llamacpp', 4096],
      ['lm-model', 'lmstudio', 8192],
      ['o-model:1b', 'ollama', 2048],
      ['or/model', 'openrouter', 65536],
      ['v-model', 'vllm', 32768],
    ]);
    // OpenRouter's own price (USD per token) with the 5% markup, in micro-USDC per 1M tokens.
    expect(caps.find((m) => m.model_id === 'or/model')).toMatchObject({
      input_per_1m: 1_050_000,
      output_per_1m: 2_100_000,
    });
    for (const m of caps)
      expect((await s.dispatch({ model_id: String(m.model_id) }).done()).type).toBe('job_done');
    // The operator's key is the only identity sent upstream.
    const orReq = or.requests.items.find((q) => q.method === 'POST')!;
    expect(orReq.headers.authorization).toBe('Bearer or-key-123456');
  });

  it('skips a backend whose API key variable is missing, with a clear warning', async () => {
    const v = await new VllmEmulator().start();
    const o = await new OllamaEmulator().start();
    r = await rig({
      engine: v,
      extraEngines: [o],
      logLevel: 'warn',
      env: {},
      config: {
        backends: [
          { kind: 'vllm', url: v.url, api_key_env: 'MISSING_KEY' },
          { kind: 'ollama', url: o.url },
        ],
      },
    });
    expect(
      r.t.lines.some(
        (l) => l.includes('backend skipped: its API key variable is not set') && l.includes('MISSING_KEY'),
      ),
    ).toBe(true);
    expect(((await r.session.capabilities()).models as { backend: string }[]).map((m) => m.backend)).toEqual([
      'ollama',
    ]);
  });
});

describe('engine specifics', () => {
  it('llama.cpp: 503 while loading, /props when meta lacks n_ctx, router mode, /slots load', async () => {
    const e = await new LlamacppEmulator({
      reportsNCtx: false,
      slots: 4,
      models: [{ id: 'm.gguf', contextWindow: 2048, trainContext: 131072 }],
    }).start();
    const b = new LlamacppBackend({ url: e.url, log: silentLogger });
    cleanup.push(async () => {
      await b.close();
      await e.close();
    });
    e.loading = true;
    expect(await b.probe()).toMatchObject({ healthy: false, detail: 'loading model (/health answered 503)' });
    e.loading = false;
    expect(await b.probe()).toEqual({
      healthy: true,
      models: [{ id: 'm.gguf', contextWindow: 2048, anthropicNative: true }],
      load: { capacity: 4, running: 0 },
    });
    const router = await new LlamacppEmulator({
      router: true,
      models: [
        { id: 'a', contextWindow: 4096 },
        { id: 'b', loaded: false },
      ],
    }).start();
    const rb = new LlamacppBackend({ url: router.url, log: silentLogger });
    const rbAll = new LlamacppBackend({ url: router.url, log: silentLogger, includeUnloaded: true });
    cleanup.push(async () => {
      await rb.close();
      await rbAll.close();
      await router.close();
    });
    expect((await rb.probe()).models.map((m) => m.id)).toEqual(['a']);
    expect((await rbAll.probe()).models.map((m) => m.id)).toEqual(['a', 'b']);
  });

  it('LM Studio: loaded LLMs only, never embeddings, JIT on request, /api/v0 fallback, 401 means a token is needed', async () => {
    const models = [
      { id: 'loaded-llm', contextWindow: 4096, trainContext: 32768 },
      { id: 'jit-llm', loaded: false, trainContext: 65536 },
      { id: 'text-embedding-nomic', type: 'embedding' as const },
    ];
    const v1 = await new LmstudioEmulator({ models, parallel: 2 }).start();
    const v0 = await new LmstudioEmulator({ models, apiV1: false }).start();
    const locked = await new LmstudioEmulator({ models, apiKey: 'lms-token-123' }).start();
    const backends = [
      new LmstudioBackend({ url: v1.url, log: silentLogger }),
      new LmstudioBackend({ url: v1.url, log: silentLogger, includeJit: true }),
      new LmstudioBackend({ url: v0.url, log: silentLogger }),
      new LmstudioBackend({ url: locked.url, log: silentLogger }),
    ];
    cleanup.push(async () => {
      for (const b of backends) await b.close();
      for (const e of [v1, v0, locked]) await e.close();
    });
    const [plain, jit, old, noToken] = await Promise.all(backends.map((b) => b.probe()));
    expect(plain).toEqual({
      healthy: true,
      models: [{ id: 'loaded-llm', contextWindow: 4096, capacity: 2 }],
      load: { capacity: 2 },
    });
    // A JIT model is not loaded: its max_context_length is a training maximum, not a window (section 7).
    expect(jit!.models).toEqual([{ id: 'loaded-llm', contextWindow: 4096, capacity: 2 }, { id: 'jit-llm' }]);
    // 0.3.x reports only max_context_length (the training maximum): no window is advertised.
    expect(old!.models).toEqual([{ id: 'loaded-llm' }]);
    expect(noToken).toMatchObject({ healthy: false });
    expect(noToken!.detail).toMatch(/API token/);
  });
});

describe('plugin resolution by kind', () => {
  it('finds usepod-agent-plugin-<kind> and @scope/usepod-agent-plugin-<kind>, and names what it looked for', async () => {
    const root = await mkdtemp(join(tmpdir(), 'usepod-res-'));
    cleanup.push(() => rm(root, { recursive: true, force: true }));
    const pkg = async (name: string, kind: string) => {
      const d = join(root, 'node_modules', name);
      await mkdir(d, { recursive: true });
      await writeFile(
        join(d, 'package.json'),
        JSON.stringify({ name, version: '1.0.0', type: 'module', exports: './index.js' }),
      );
      await writeFile(
        join(d, 'index.js'),
        `export default () => ({ name: '${name}', apiVersion: 1, kinds: ['${kind}'], apply(_h, ctx) { ctx.registerBackend('${kind}', () => { throw new Error('unused'); }); } });\n`,
      );
    };
    await pkg('usepod-agent-plugin-foo', 'foo');
    await pkg('@acme/usepod-agent-plugin-bar', 'bar');
    expect((await loadPluginForKind('foo', installedPlugins([root]))).name).toBe('usepod-agent-plugin-foo');
    expect((await loadPluginForKind('bar', installedPlugins([root]))).name).toBe(
      '@acme/usepod-agent-plugin-bar',
    );
    expect((await loadPluginForKind('vllm', installedPlugins([root]))).name).toBe(
      '@usepod-agent/plugin-vllm',
    );
    const err = await loadPluginForKind('baz', installedPlugins([root])).catch((e: unknown) => e);
    expect(isUsepodError(err, 'USEPOD_PLUGIN_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toContain('looked for usepod-agent-plugin-baz');
    // An API version mismatch is a coded error.
    const d = join(root, 'node_modules', 'usepod-agent-plugin-old');
    await mkdir(d, { recursive: true });
    await writeFile(
      join(d, 'package.json'),
      JSON.stringify({ name: 'usepod-agent-plugin-old', type: 'module', exports: './index.js' }),
    );
    await writeFile(join(d, 'index.js'), `export default { name: 'old', apiVersion: 0, apply() {} };\n`);
    const old = await loadPluginForKind('old', installedPlugins([root])).catch((e: unknown) => e);
    expect(isUsepodError(old, 'USEPOD_PLUGIN_API_MISMATCH')).toBe(true);
  });
});
