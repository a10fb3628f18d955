import llamacppPlugin from '@usepod-agent/plugin-llamacpp';
import lmstudioPlugin from '@usepod-agent/plugin-lmstudio';
import ollamaPlugin from '@usepod-agent/plugin-ollama';
import openaiPlugin from '@usepod-agent/plugin-openai-compatible';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  type EngineEmulator,
  LlamacppEmulator,
  LmstudioEmulator,
  OllamaEmulator,
  OpenAIEmulator,
  type TestAgent,
  type TestAgentOptions,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * ENGINES.md section 7, fact by fact, through the agent: each engine emulator behaves as the engine's own
 * source says, and the agent (plugin and core) gets each fact right over real sockets.
 */
const ALL = [vllmPlugin, ollamaPlugin, llamacppPlugin, lmstudioPlugin, openaiPlugin];
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface Served {
  t: TestAgent;
  session: CoordinatorSession;
  models: Record<string, Record<string, unknown>>;
}

/** An agent serving the given engines, authenticated, with its first capabilities by model id. */
async function serve(engines: EngineEmulator[], opts: TestAgentOptions): Promise<Served> {
  const t = await createTestAgent({ plugins: ALL, ...opts });
  cleanup.push(async () => {
    await t.close();
    for (const e of engines) await e.close();
  });
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await t.coordinator.firstAuthenticated();
  const caps = await session.capabilities();
  const models = Object.fromEntries(
    (caps.models as Record<string, unknown>[]).map((m) => [String(m.model_id), m]),
  );
  return { t, session, models };
}

const hi = { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5 };

describe('Venice', () => {
  it('sells at model_spec.pricing (USD per 1M) plus markup, with availableContextTokens, and never offers an offline model', async () => {
    const engine = await new OpenAIEmulator({
      flavor: 'venice',
      prefix: '/api/v1',
      models: [
        { id: 'llama-3.3-70b', contextWindow: 65536 },
        { id: 'venice-uncensored', contextWindow: 32768, offline: true },
      ],
      pricing: {
        'llama-3.3-70b': { prompt: '0.0000007', completion: '0.0000028' },
        'venice-uncensored': { prompt: '0.0000005', completion: '0.000002' },
      },
    }).start();
    const { models } = await serve([engine], {
      config: {
        backends: [{ kind: 'venice', url: `${engine.url}/api/v1`, api_key_env: 'VENICE_KEY', markup: 0.1 }],
      },
      env: { VENICE_KEY: 'venice-key-123456' },
    });
    // $0.70 and $2.80 per 1M, plus 10%: 770,000 and 3,080,000 micro-USDC per 1M, not the defaults.
    expect(models['llama-3.3-70b']).toMatchObject({
      input_per_1m: 770_000,
      output_per_1m: 3_080_000,
      context_window: 65536,
      backend: 'venice',
    });
    expect(models['venice-uncensored']).toBeUndefined();
  });
});

describe('OpenRouter', () => {
  it('answers out_of_capacity for a 429 and auth_rejected_by_backend for a 402, and relays its processing comments', async () => {
    const engine = await new OpenAIEmulator({
      flavor: 'openrouter',
      prefix: '/api/v1',
      models: [{ id: 'meta-llama/llama-3.3-70b-instruct', contextWindow: 131072 }],
      pricing: { 'meta-llama/llama-3.3-70b-instruct': { prompt: '0.00000013', completion: '0.0000004' } },
    }).start();
    const { session, models } = await serve([engine], {
      config: { backends: [{ kind: 'openrouter', url: `${engine.url}/api/v1`, api_key_env: 'OR_KEY' }] },
      env: { OR_KEY: 'sk-or-v1-abcdef123456' },
    });
    const model = 'meta-llama/llama-3.3-70b-instruct';
    expect(models[model]).toMatchObject({ input_per_1m: 130_000, output_per_1m: 400_000 });
    const ok = session.dispatch({ model_id: model, request: hi });
    expect((await ok.done()).type).toBe('job_done');
    expect(ok.text()).toContain(': OPENROUTER PROCESSING');
    engine.behave({
      kind: 'status',
      status: 429,
      body: '{"error":{"message":"Rate limit exceeded: free-models-per-min","code":429}}',
    });
    expect(await session.dispatch({ model_id: model, request: hi }).done()).toMatchObject({
      error_code: 'out_of_capacity',
    });
    engine.behave({
      kind: 'status',
      status: 402,
      body: '{"error":{"message":"Insufficient credits","code":402}}',
    });
    expect(await session.dispatch({ model_id: model, request: hi }).done()).toMatchObject({
      error_code: 'auth_rejected_by_backend',
    });
  });
});

describe('Ollama', () => {
  it('counts tokens when the client sent stream_options without include_usage', async () => {
    const engine = await new OllamaEmulator().start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'ollama', url: engine.url }] },
    });
    const done = await session
      .dispatch({
        model_id: 'llama3.2:3b',
        request: { ...hi, stream_options: { continuous_usage_stats: true } },
      })
      .done();
    expect(done).toMatchObject({ type: 'job_done', tokens: { output: 5, input: 7 } });
    expect(engine.requests.items.at(-1)!.body?.stream_options).toEqual({
      continuous_usage_stats: true,
      include_usage: true,
    });
  });

  it('answers out_of_capacity when its queue is full (503 server busy), and advertises each model at its own capacity', async () => {
    const engine = await new OllamaEmulator({
      numParallel: 2,
      maxQueue: 0,
      models: [
        { id: 'llama3.2:3b', contextWindow: 4096 },
        { id: 'qwen3:8b', contextWindow: 8192, numCtx: 8192 },
      ],
    }).start();
    const { session, models } = await serve([engine], {
      config: { backends: [{ kind: 'ollama', url: engine.url, options: { num_parallel: 2 } }] },
    });
    // Two loaded models at OLLAMA_NUM_PARALLEL=2: each runs 2 at once, not the server's 4.
    expect(models['llama3.2:3b']).toMatchObject({ max_concurrent: 2, context_window: 4096 });
    expect(models['qwen3:8b']).toMatchObject({ max_concurrent: 2, context_window: 8192 });
    engine.always({ kind: 'controlled' });
    const running = [0, 1].map(() => session.dispatch({ model_id: 'llama3.2:3b', request: hi }));
    const streams = [await engine.controlled.waitFor(), await engine.controlled.next()];
    const refused = await session.dispatch({ model_id: 'llama3.2:3b', request: hi }).done();
    expect(refused).toMatchObject({ type: 'job_error', error_code: 'out_of_capacity' });
    expect(String(refused.message)).toContain('server busy');
    for (const s of streams)
      s.end('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    for (const j of running) expect((await j.done()).type).toBe('job_done');
  });
});

describe('Ollama, continued', () => {
  it('a model not loaded is served after its load; a failing Messages stream just stops and ends job_error', async () => {
    const engine = await new OllamaEmulator({
      version: '0.14.0',
      loadDelayMs: 100,
      models: [{ id: 'qwen3:8b', contextWindow: 4096, loaded: false }],
    }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'ollama', url: engine.url }] },
    });
    expect((await session.dispatch({ model_id: 'qwen3:8b', request: hi }).done()).type).toBe('job_done');
    engine.behave({ kind: 'error-in-stream', afterTokens: 1 });
    const job = session.dispatch({
      model_id: 'qwen3:8b',
      format: 'anthropic',
      request: { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
    });
    const failed = await job.done();
    expect(engine.requests.items.at(-1)!.path).toBe('/v1/messages');
    expect(job.text()).not.toContain('event: error');
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(String(failed.message)).toContain('ended without');
  });

  it('a tool call that arrives whole in one chunk becomes one tool_use block when translated', async () => {
    const engine = await new OllamaEmulator({ version: '0.13.0' }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'ollama', url: engine.url }] },
    });
    engine.behave({ kind: 'tool-call', name: 'get_weather', arguments: '{"city":"Lyon"}' });
    const job = session.dispatch({
      model_id: 'llama3.2:3b',
      format: 'anthropic',
      request: { max_tokens: 20, messages: [{ role: 'user', content: 'weather?' }] },
    });
    expect((await job.done()).type).toBe('job_done');
    expect(engine.requests.items.at(-1)!.path).toBe('/v1/chat/completions');
    const text = job.text();
    expect(text).toContain('"type":"tool_use"');
    expect(text).toContain('"name":"get_weather"');
    expect(text).toContain('"partial_json":"{\\"city\\":\\"Lyon\\"}"');
    expect(text).toContain('"stop_reason":"tool_use"');
  });
});

describe('LM Studio', () => {
  it('0.3.x: never advertises max_context_length (a training maximum) as the window', async () => {
    const engine = await new LmstudioEmulator({
      apiV1: false,
      models: [{ id: 'qwen3-8b', contextWindow: 4096, trainContext: 40960 }],
    }).start();
    const { models } = await serve([engine], {
      config: { backends: [{ kind: 'lmstudio', url: engine.url }] },
    });
    expect(models['qwen3-8b']).toBeDefined();
    expect(models['qwen3-8b']!.context_window).toBeUndefined();
  });

  it('0.4: the loaded window, and each instance at its own parallel', async () => {
    const engine = await new LmstudioEmulator({ parallel: 3 }).start();
    const { models } = await serve([engine], {
      config: { backends: [{ kind: 'lmstudio', url: engine.url }] },
    });
    expect(models['qwen3-8b']).toMatchObject({ context_window: 4096, max_concurrent: 3 });
  });

  it('a 200 that carries an error is an error, with the engine message', async () => {
    const engine = await new LmstudioEmulator().start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'lmstudio', url: engine.url }] },
    });
    engine.behave({ kind: 'status', status: 200, body: '{"error":"Model is unloaded."}' });
    const failed = await session.dispatch({ model_id: 'qwen3-8b', request: hi }).done();
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(String(failed.message)).toContain('Model is unloaded.');
  });

  it('an overflow is a 400 whose message reaches job_error', async () => {
    const engine = await new LmstudioEmulator().start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'lmstudio', url: engine.url }] },
    });
    const long = { messages: [{ role: 'user', content: 'word '.repeat(5000) }], max_tokens: 5 };
    const failed = await session.dispatch({ model_id: 'qwen3-8b', request: long }).done();
    expect(String(failed.message)).toContain('context length of only 4096 tokens');
  });
});

describe('llama.cpp', () => {
  it('router mode: each model window and slots from /props?model=<id>, never the router n_ctx of 0', async () => {
    const engine = await new LlamacppEmulator({
      router: true,
      slots: 3,
      models: [
        { id: 'qwen2.5-7b', contextWindow: 8192 },
        { id: 'gemma-3-4b', contextWindow: 16384 },
        { id: 'not-loaded', contextWindow: 2048, loaded: false },
      ],
    }).start();
    const { models } = await serve([engine], {
      config: { backends: [{ kind: 'llamacpp', url: engine.url }] },
    });
    expect(models['qwen2.5-7b']).toMatchObject({ context_window: 8192, max_concurrent: 3 });
    expect(models['gemma-3-4b']).toMatchObject({ context_window: 16384 });
    expect(models['not-loaded']).toBeUndefined();
    expect(engine.requests.items.some((q) => q.path === '/props' && q.headers.host)).toBe(true);
  });

  it('reads the flat event: error of its Messages streams into job_error', async () => {
    const engine = await new LlamacppEmulator({ models: [{ id: 'tiny', contextWindow: 4096 }] }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'llamacpp', url: engine.url }] },
    });
    engine.behave({ kind: 'error-in-stream', afterTokens: 1, message: 'the slot crashed' });
    const failed = await session
      .dispatch({
        model_id: 'tiny',
        format: 'anthropic',
        request: { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      })
      .done();
    expect(engine.requests.items.at(-1)!.path).toBe('/v1/messages');
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(String(failed.message)).toContain('the slot crashed');
  });

  it('counts cached prompt tokens as input in Anthropic jobs', async () => {
    const engine = await new LlamacppEmulator({
      models: [{ id: 'tiny', contextWindow: 4096 }],
      cachedPromptTokens: 5,
    }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'llamacpp', url: engine.url }] },
    });
    const done = await session
      .dispatch({
        model_id: 'tiny',
        format: 'anthropic',
        request: { max_tokens: 4, messages: [{ role: 'user', content: 'one two three' }] },
      })
      .done();
    // 8 prompt tokens, 5 of them from the cache: input_tokens 3 on the wire, 8 in job_done.
    expect(done).toMatchObject({ type: 'job_done', tokens: { input: 8, output: 4 } });
  });

  it('a prompt over the context ends job_error with the engine message', async () => {
    const engine = await new LlamacppEmulator({ models: [{ id: 'tiny', contextWindow: 256 }] }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'llamacpp', url: engine.url }] },
    });
    const long = { messages: [{ role: 'user', content: 'word '.repeat(400) }], max_tokens: 5 };
    const failed = await session.dispatch({ model_id: 'tiny', request: long }).done();
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(String(failed.message)).toMatch(
      /request \(405 tokens\) exceeds the available context size \(256 tokens\)/,
    );
  });

  it('a job that meets 503 Loading model fails over to another server of the model, and discovery hears of it', async () => {
    const models = [{ id: 'shared', contextWindow: 4096 }];
    const restarting = await new LlamacppEmulator({ models }).start();
    const steady = await new LlamacppEmulator({ models }).start();
    const { t, session } = await serve([restarting, steady], {
      config: {
        backends: [
          { kind: 'llamacpp', url: restarting.url, name: 'restarting' },
          { kind: 'llamacpp', url: steady.url, name: 'steady' },
        ],
      },
    });
    restarting.loading = true;
    const done = await session.dispatch({ model_id: 'shared', request: hi }).done();
    expect(done.type).toBe('job_done');
    expect(restarting.requests.items.some((q) => q.path === '/v1/chat/completions')).toBe(true);
    expect(steady.requests.items.some((q) => q.path === '/v1/chat/completions')).toBe(true);
    const snap = t.agent.snapshot().backends.find((b) => b.label === 'restarting')!;
    expect(snap.healthy).toBe(false);
  });

  it('streams with a null first delta, ":" pings and usage without include_usage are relayed and counted', async () => {
    const engine = await new LlamacppEmulator({ models: [{ id: 'tiny', contextWindow: 4096 }] }).start();
    const { session } = await serve([engine], {
      config: { backends: [{ kind: 'llamacpp', url: engine.url }] },
    });
    const job = session.dispatch({ model_id: 'tiny', request: { ...hi, max_tokens: 20 } });
    expect(await job.done()).toMatchObject({ type: 'job_done', tokens: { output: 20 } });
    expect(job.text()).toContain('"content":null');
    expect(job.text()).toContain('\n:\n');
    expect(Buffer.concat(engine.requests.items.at(-1)!.sent).equals(job.body())).toBe(true);
  });
});

describe('vLLM', () => {
  it('a LoRA adapter is advertised with its parent max_model_len', async () => {
    const engine = await new VllmEmulator({
      models: [
        { id: 'Qwen/Qwen3-14B', contextWindow: 16384 },
        { id: 'sql-lora', parent: 'Qwen/Qwen3-14B' },
      ],
    }).start();
    const { models } = await serve([engine], { config: { backends: [{ kind: 'vllm', url: engine.url }] } });
    expect(models['sql-lora']).toMatchObject({ context_window: 16384 });
  });

  it('a prompt plus max_tokens over the window is a 400 whose message reaches job_error', async () => {
    const engine = await new VllmEmulator({ models: [{ id: 'small', contextWindow: 1024 }] }).start();
    const { session } = await serve([engine], { config: { backends: [{ kind: 'vllm', url: engine.url }] } });
    const failed = await session.dispatch({ model_id: 'small', request: { ...hi, max_tokens: 2000 } }).done();
    expect(failed).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(String(failed.message)).toContain('maximum context length is 1024 tokens');
  });

  it('Messages streams that end with [DONE] after message_stop are done; keep-alive comments are relayed', async () => {
    const engine = await new VllmEmulator().start();
    const { session } = await serve([engine], { config: { backends: [{ kind: 'vllm', url: engine.url }] } });
    const job = session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      format: 'anthropic',
      request: { max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(await job.done()).toMatchObject({ type: 'job_done', tokens: { output: 20 } });
    expect(job.text()).toMatch(/message_stop"}\n\ndata: \[DONE\]\n\n$/);
    const chat = session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: { ...hi, max_tokens: 20 } });
    await chat.done();
    expect(chat.text()).toContain(': keep-alive\n\n');
  });

  it('reasoning deltas become thinking blocks, in order, when an Anthropic job is translated', async () => {
    for (const field of ['reasoning_content', 'reasoning'] as const) {
      const engine = await new VllmEmulator({ version: '0.11.0' }).start();
      const { session } = await serve([engine], {
        config: { backends: [{ kind: 'vllm', url: engine.url }] },
      });
      engine.behave({ kind: 'reasoning', field, text: 'let me think' });
      const job = session.dispatch({
        model_id: 'Qwen/Qwen3-14B',
        format: 'anthropic',
        request: { max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] },
      });
      expect((await job.done()).type).toBe('job_done');
      const events = job
        .text()
        .split('\n\n')
        .filter((e) => e.startsWith('event: content_block'))
        .map(
          (e) =>
            JSON.parse(e.slice(e.indexOf('data: ') + 6)) as {
              type: string;
              index: number;
              delta?: Record<string, unknown>;
              content_block?: Record<string, unknown>;
            },
        );
      expect(events[0]).toMatchObject({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'thinking' },
      });
      const thinking = events.filter((e) => e.delta?.type === 'thinking_delta').map((e) => e.delta!.thinking);
      expect(thinking.join('')).toBe('let me think');
      const text = events.find((e) => e.type === 'content_block_start' && e.content_block?.type === 'text');
      expect(text).toMatchObject({ index: 1 });
      await Promise.all(cleanup.splice(0).map((c) => c()));
    }
  });
});
