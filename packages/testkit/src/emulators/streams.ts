import type { ServerResponse } from 'node:http';
import { delay, type StreamContext, text, tokenText, writeAndDrain } from './base.js';

/**
 * The event streams engines send, written chunk by chunk with each engine's
 * own details (its `flavor`), and the scripted faults of `Behavior`.
 */

export interface ChatFlavor {
  /** Response id of one completion. */
  id(): string;
  /** `model` field in chunks. */
  model(ctx: StreamContext): string;
  systemFingerprint?: (ctx: StreamContext) => string;
  /** Extra fields on the finishing choice (vLLM `stop_reason`). */
  finishExtra?: Record<string, unknown>;
  /** Usage chunk policy: only with `include_usage: true`, never, or always (llama.cpp sends it either way). */
  usage: 'requested' | 'never' | 'always';
  /** The first delta (llama.cpp: `{"role":"assistant","content":null}`); default role and empty content. */
  firstDelta?: Record<string, unknown>;
  /** Tool calls arrive whole, name and arguments in one chunk (Ollama). */
  wholeToolCalls?: boolean;
  /** An SSE comment the engine sends in its streams (vLLM `: keep-alive`, llama.cpp `:`, OpenRouter `: OPENROUTER PROCESSING`). */
  comment?: string;
  /** llama.cpp: a `timings` object on the last chunk either way. */
  timings?: boolean;
  /** How an error after the 200 looks: its data lines, and whether `[DONE]` still follows. */
  streamError(message: string): { lines: string[]; done: boolean };
  /** Content type of the stream. */
  contentType?: string;
  /** Choices carry `logprobs: null` (default true; llama.cpp leaves the key out). */
  logprobs?: boolean;
  /** Usage carries `prompt_tokens_details.cached_tokens` (llama.cpp). */
  usageDetails?: boolean;
}

/** Resolves once what was written reached the kernel, so a crash after it still delivers it. */
async function flushed(res: ServerResponse): Promise<void> {
  await delay(0); // corked writes are flushed on the next tick
  const sock = res.socket;
  if (!sock || sock.writableLength === 0) return;
  await new Promise<void>((resolve) => sock.once('drain', () => resolve()));
}

const created = () => Math.floor(Date.now() / 1000);

function sse(obj: unknown): string {
  return `data: ${JSON.stringify(obj)}\n\n`;
}

/** Handles the behaviours that do not depend on the stream's shape. Returns true when it answered. */
async function preamble(ctx: StreamContext, contentType: string): Promise<boolean> {
  const b = ctx.behavior;
  if (b.kind === 'hang') return true; // never answer; the client must give up
  if (b.kind === 'status') {
    text(ctx.res, b.status, b.body, b.contentType ?? 'application/json');
    return true;
  }
  if (b.kind === 'not-sse') {
    text(
      ctx.res,
      200,
      b.body ?? '{"id":"x","object":"chat.completion","choices":[]}',
      b.contentType ?? 'application/json',
    );
    return true;
  }
  ctx.res.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  ctx.res.flushHeaders();
  return false;
}

export async function writeChatStream(ctx: StreamContext, flavor: ChatFlavor): Promise<void> {
  const contentType = flavor.contentType ?? 'text/event-stream; charset=utf-8';
  if (ctx.behavior.kind === 'controlled') return; // handed over by the caller
  if (await preamble(ctx, contentType)) return;
  const { res } = ctx;
  const b = ctx.behavior;
  const id = flavor.id();
  const lp = flavor.logprobs === false ? {} : { logprobs: null };
  const base = () => ({
    id,
    object: 'chat.completion.chunk',
    created: created(),
    model: flavor.model(ctx),
    ...(flavor.systemFingerprint ? { system_fingerprint: flavor.systemFingerprint(ctx) } : {}),
  });
  await writeAndDrain(
    res,
    sse({
      ...base(),
      choices: [
        {
          index: 0,
          delta: flavor.firstDelta ?? { role: 'assistant', content: '' },
          ...lp,
          finish_reason: null,
        },
      ],
    }),
  );
  const wantsUsage = flavor.usage === 'always' || (flavor.usage === 'requested' && ctx.includeUsage);
  if (flavor.comment !== undefined) await writeAndDrain(res, `${flavor.comment}\n\n`);
  if (b.kind === 'reasoning') {
    for (const piece of halves(b.text)) {
      await writeAndDrain(
        res,
        sse({
          ...base(),
          choices: [{ index: 0, delta: { [b.field]: piece }, ...lp, finish_reason: null }],
        }),
      );
    }
  }
  if (b.kind === 'tool-call') {
    const id = `call_${Math.random().toString(36).slice(2, 10)}`;
    const pieces = flavor.wholeToolCalls ? [] : halves(b.arguments);
    await writeAndDrain(
      res,
      sse({
        ...base(),
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                {
                  index: 0,
                  id,
                  type: 'function',
                  function: { name: b.name, arguments: flavor.wholeToolCalls ? b.arguments : '' },
                },
              ],
            },
            finish_reason: null,
          },
        ],
      }),
    );
    for (const p of pieces) {
      await writeAndDrain(
        res,
        sse({
          ...base(),
          choices: [
            {
              index: 0,
              delta: { tool_calls: [{ index: 0, function: { arguments: p } }] },
              finish_reason: null,
            },
          ],
        }),
      );
    }
    await writeAndDrain(
      res,
      sse({ ...base(), choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }),
    );
    if (wantsUsage) {
      await writeAndDrain(
        res,
        sse({
          ...base(),
          choices: [],
          usage: {
            prompt_tokens: ctx.promptTokens,
            completion_tokens: 9,
            total_tokens: ctx.promptTokens + 9,
          },
        }),
      );
    }
    await writeAndDrain(res, 'data: [DONE]\n\n');
    res.end();
    return;
  }
  for (let i = 0; i < ctx.tokens; i++) {
    if (ctx.gone()) return;
    if (b.kind === 'error-in-stream' && i === (b.afterTokens ?? 1)) {
      const err = flavor.streamError(b.message ?? 'an error was encountered while running the model');
      for (const line of err.lines) await writeAndDrain(res, line);
      if (err.done) await writeAndDrain(res, 'data: [DONE]\n\n');
      res.end();
      return;
    }
    if (b.kind === 'drop' && i === (b.afterTokens ?? 2)) {
      await flushed(res);
      res.destroy();
      return;
    }
    await writeAndDrain(
      res,
      sse({
        ...base(),
        choices: [{ index: 0, delta: { content: tokenText(i) }, ...lp, finish_reason: null }],
      }),
    );
    if (b.kind === 'hang-after-first') return; // stall with the connection open
    if (flavor.comment !== undefined && i % 16 === 15) await writeAndDrain(res, `${flavor.comment}\n\n`);
    if (ctx.tokenDelayMs > 0 || i % 64 === 63) await delay(ctx.tokenDelayMs);
  }
  if (b.kind === 'no-done') {
    res.end();
    return;
  }
  const usage = {
    prompt_tokens: ctx.promptTokens,
    total_tokens: ctx.promptTokens + ctx.tokens,
    completion_tokens: ctx.tokens,
    ...(flavor.usageDetails ? { prompt_tokens_details: { cached_tokens: 0 } } : {}),
  };
  const timings = flavor.timings
    ? {
        timings: {
          cache_n: 0,
          prompt_n: ctx.promptTokens,
          prompt_ms: 12.5,
          prompt_per_token_ms: 12.5 / ctx.promptTokens,
          prompt_per_second: (ctx.promptTokens / 12.5) * 1000,
          predicted_n: ctx.tokens,
          predicted_ms: ctx.tokens * 10,
          predicted_per_token_ms: 10,
          predicted_per_second: 100,
        },
      }
    : {};
  await writeAndDrain(
    res,
    sse({
      ...base(),
      choices: [{ index: 0, delta: {}, ...lp, finish_reason: 'length', ...flavor.finishExtra }],
      ...(wantsUsage ? {} : timings),
    }),
  );
  if (wantsUsage) {
    const line = sse({ ...base(), choices: [], usage, ...timings });
    if (b.kind === 'split-usage') {
      const cut = line.indexOf('"completion_tokens"') + 5;
      await writeAndDrain(res, line.slice(0, cut));
      await delay(15);
      await writeAndDrain(res, line.slice(cut));
    } else {
      await writeAndDrain(res, line);
    }
  }
  await writeAndDrain(res, 'data: [DONE]\n\n');
  res.end();
}

/** How one engine writes its Anthropic Messages streams (ENGINES.md section 7). */
export interface AnthropicFlavor {
  idPrefix?: string;
  /** vLLM ends its streams, errors included, with `data: [DONE]` after the last event. */
  doneAfter?: boolean;
  /** The data of an `event: error` (default: Anthropic's `{"type":"error","error":{...}}`). */
  errorData?: (message: string) => unknown;
  /** Prompt tokens read from the cache: `input_tokens` then counts only the rest (llama.cpp). */
  cachedPromptTokens?: number;
  /** Ollama's Messages writer emits no error events: a failing stream just stops. */
  noErrorEvents?: boolean;
  /** `message_delta` usage carries the input counts too (vLLM); llama.cpp sends only `output_tokens`. */
  deltaInputUsage?: boolean;
  /** `cache_read_input_tokens` is always there, 0 when nothing was cached (llama.cpp). */
  cacheReadAlways?: boolean;
}

/** An Anthropic Messages event stream (`/v1/messages`), as the engines that serve it send. */
export async function writeAnthropicStream(ctx: StreamContext, flavor: AnthropicFlavor = {}): Promise<void> {
  if (ctx.behavior.kind === 'controlled') return;
  if (await preamble(ctx, 'text/event-stream; charset=utf-8')) return;
  const { res } = ctx;
  const b = ctx.behavior;
  const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  const id = `${flavor.idPrefix ?? 'msg_'}${Math.random().toString(36).slice(2, 14)}`;
  const cached = Math.min(flavor.cachedPromptTokens ?? 0, ctx.promptTokens);
  const inputUsage = {
    ...(cached > 0 || flavor.cacheReadAlways ? { cache_read_input_tokens: cached } : {}),
    input_tokens: ctx.promptTokens - cached,
  };
  await writeAndDrain(
    res,
    ev('message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model: ctx.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...inputUsage, output_tokens: 0 },
      },
    }),
  );
  await writeAndDrain(
    res,
    ev('content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    }),
  );
  for (let i = 0; i < ctx.tokens; i++) {
    if (ctx.gone()) return;
    if (b.kind === 'error-in-stream' && i === (b.afterTokens ?? 1)) {
      const message = b.message ?? 'engine failed';
      const data = flavor.errorData?.(message) ?? { type: 'error', error: { type: 'api_error', message } };
      if (!flavor.noErrorEvents) await writeAndDrain(res, ev('error', data));
      if (flavor.doneAfter) await writeAndDrain(res, 'data: [DONE]\n\n');
      res.end();
      return;
    }
    if (b.kind === 'drop' && i === (b.afterTokens ?? 2)) {
      await flushed(res);
      res.destroy();
      return;
    }
    await writeAndDrain(
      res,
      ev('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: tokenText(i) },
      }),
    );
    if (b.kind === 'hang-after-first') return;
    if (ctx.tokenDelayMs > 0) await delay(ctx.tokenDelayMs);
  }
  if (b.kind === 'no-done') {
    res.end();
    return;
  }
  await writeAndDrain(res, ev('content_block_stop', { type: 'content_block_stop', index: 0 }));
  await writeAndDrain(
    res,
    ev('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: 'max_tokens', stop_sequence: null },
      usage:
        flavor.deltaInputUsage === false
          ? { output_tokens: ctx.tokens }
          : { ...inputUsage, output_tokens: ctx.tokens },
    }),
  );
  await writeAndDrain(res, ev('message_stop', { type: 'message_stop' }));
  if (flavor.doneAfter) await writeAndDrain(res, 'data: [DONE]\n\n');
  res.end();
}

/** A text in two deltas, as engines split what they stream. */
function halves(text: string): [string, string] {
  const mid = Math.ceil(text.length / 2);
  return [text.slice(0, mid), text.slice(mid)];
}
