import { Transform, type TransformCallback } from 'node:stream';
import { tokenCount } from '../untrusted.js';

/**
 * Anthropic-format jobs for engines that do not serve `/v1/messages`: the
 * Messages request becomes a chat-completions request, and the engine's chat
 * event stream becomes a Messages event stream (message_start, content blocks
 * for text and tool use, message_delta with the stop reason and usage,
 * message_stop). Engines that speak Messages natively are relayed verbatim.
 */

type Json = Record<string, unknown>;

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((b: Json) => (b && b.type === 'text' && typeof b.text === 'string' ? b.text : ''))
      .join('');
  }
  return '';
}

/** Converts one Anthropic message into chat messages (tool results become `tool` messages). */
function convertMessage(m: Json): Json[] {
  const role = m.role === 'assistant' ? 'assistant' : 'user';
  if (typeof m.content === 'string') return [{ role, content: m.content }];
  const blocks = Array.isArray(m.content) ? (m.content as Json[]) : [];
  const out: Json[] = [];
  const parts: Json[] = [];
  const toolCalls: Json[] = [];
  for (const b of blocks) {
    if (b.type === 'text') parts.push({ type: 'text', text: b.text });
    else if (b.type === 'image') {
      const src = b.source as Json | undefined;
      if (src?.type === 'base64')
        parts.push({ type: 'image_url', image_url: { url: `data:${src.media_type};base64,${src.data}` } });
      else if (src?.type === 'url') parts.push({ type: 'image_url', image_url: { url: src.url } });
    } else if (b.type === 'tool_use') {
      toolCalls.push({
        id: b.id,
        type: 'function',
        function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) },
      });
    } else if (b.type === 'tool_result') {
      out.push({
        role: 'tool',
        tool_call_id: b.tool_use_id,
        content: textOf(b.content) || (typeof b.content === 'string' ? b.content : ''),
      });
    }
  }
  const onlyText = parts.every((p) => p.type === 'text');
  const content = onlyText ? parts.map((p) => p.text).join('') : parts;
  if (role === 'assistant' && toolCalls.length > 0)
    out.push({ role, content: onlyText && content === '' ? null : content, tool_calls: toolCalls });
  else if (parts.length > 0) out.push({ role, content });
  return out;
}

/** An Anthropic Messages request as a streaming chat-completions request. */
export function anthropicToChat(body: Json, model: string): Json {
  const messages: Json[] = [];
  const system = typeof body.system === 'string' ? body.system : textOf(body.system);
  if (system) messages.push({ role: 'system', content: system });
  for (const m of (Array.isArray(body.messages) ? body.messages : []) as Json[])
    messages.push(...convertMessage(m));
  const out: Json = {
    // Always the job's model (PROTOCOL.md 5.2), never the request's own.
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (typeof body.max_tokens === 'number') out.max_tokens = body.max_tokens;
  for (const k of ['temperature', 'top_p', 'top_k'] as const)
    if (typeof body[k] === 'number') out[k] = body[k];
  if (Array.isArray(body.stop_sequences)) out.stop = body.stop_sequences;
  if (Array.isArray(body.tools)) {
    out.tools = (body.tools as Json[]).map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        description: t.description,
        parameters: t.input_schema ?? { type: 'object' },
      },
    }));
  }
  const tc = body.tool_choice as Json | undefined;
  if (tc?.type === 'auto') out.tool_choice = 'auto';
  else if (tc?.type === 'any') out.tool_choice = 'required';
  else if (tc?.type === 'none') out.tool_choice = 'none';
  else if (tc?.type === 'tool') out.tool_choice = { type: 'function', function: { name: tc.name } };
  return out;
}

const STOP_REASONS: Record<string, string> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

function event(name: string, data: Json): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Longest event line the translation holds while waiting for its newline (an engine may send one without end). */
const MAX_LINE_BYTES = 4 * 1024 * 1024;

type BlockKind = 'thinking' | 'text' | 'tool';

/** Chat-completions event stream in, Anthropic Messages event stream out. */
export class ChatToAnthropic extends Transform {
  readonly #model: string;
  /** The start of a line whose newline has not arrived yet, in pieces: each byte is searched once. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #started = false;
  #block: { index: number; kind: BlockKind; toolIndex?: number } | undefined;
  #nextIndex = 0;
  #stopReason: string | undefined;
  #input = 0;
  #output = 0;
  #finished = false;
  #failed = false;

  constructor(model: string) {
    super();
    this.#model = model;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.#failed) this.#consume(chunk);
    cb();
  }

  #consume(chunk: Buffer): void {
    let start = 0;
    let nl = chunk.indexOf(0x0a, start);
    while (nl !== -1) {
      const piece = chunk.subarray(start, nl);
      const line =
        this.#pendingBytes > 0
          ? Buffer.concat([...this.#pending, piece]).toString('utf8')
          : piece.toString('utf8');
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#line(line.endsWith('\r') ? line.slice(0, -1) : line);
      if (this.#failed) return;
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    if (start === chunk.length) return;
    this.#pendingBytes += chunk.length - start;
    if (this.#pendingBytes > MAX_LINE_BYTES) {
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#fail(`the engine sent an event line over ${MAX_LINE_BYTES} bytes`);
      return;
    }
    this.#pending.push(chunk.subarray(start));
  }

  override _flush(cb: TransformCallback): void {
    if (this.#pendingBytes > 0 && !this.#failed) this.#line(Buffer.concat(this.#pending).toString('utf8'));
    // Only a stream that really ended gets message_stop; otherwise the job fails as unfinished.
    if (this.#finished && !this.#failed) this.#end();
    cb();
  }

  #fail(message: string): void {
    this.#failed = true;
    this.push(event('error', { type: 'error', error: { type: 'api_error', message } }));
  }

  #line(line: string): void {
    if (!line.startsWith('data:')) return;
    const payload = line.slice(5).trim();
    if (payload === '[DONE]') {
      this.#finished = true;
      return;
    }
    let obj: Json;
    try {
      obj = JSON.parse(payload);
    } catch {
      return;
    }
    // `data: null`, a number, a list: not an event of a chat stream (found by fuzz.test.ts).
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return;
    if (obj.error !== undefined && obj.error !== null) {
      const e = obj.error as Json | string;
      this.#fail(typeof e === 'string' ? e : String(e.message ?? JSON.stringify(e)));
      return;
    }
    this.#start(obj);
    const usage = obj.usage as Json | undefined;
    if (usage) {
      this.#input = tokenCount(usage.prompt_tokens) ?? this.#input;
      this.#output = tokenCount(usage.completion_tokens) ?? this.#output;
    }
    for (const c of (Array.isArray(obj.choices) ? obj.choices : []) as Json[]) {
      const delta = (c.delta ?? {}) as Json;
      // Reasoning (vLLM `reasoning_content` or `reasoning`, Ollama `reasoning`) becomes a thinking block.
      const thinking =
        typeof delta.reasoning_content === 'string' ? delta.reasoning_content : delta.reasoning;
      if (typeof thinking === 'string' && thinking !== '') {
        this.#open('thinking');
        this.push(
          event('content_block_delta', {
            type: 'content_block_delta',
            index: this.#block!.index,
            delta: { type: 'thinking_delta', thinking },
          }),
        );
      }
      if (typeof delta.content === 'string' && delta.content !== '') {
        this.#open('text');
        this.push(
          event('content_block_delta', {
            type: 'content_block_delta',
            index: this.#block!.index,
            delta: { type: 'text_delta', text: delta.content },
          }),
        );
      }
      for (const tc of (Array.isArray(delta.tool_calls) ? delta.tool_calls : []) as Json[]) {
        const fn = (tc.function ?? {}) as Json;
        const toolIndex = typeof tc.index === 'number' ? tc.index : 0;
        if (this.#block?.kind !== 'tool' || this.#block.toolIndex !== toolIndex) {
          this.#open('tool', toolIndex, { id: tc.id ?? `toolu_${toolIndex}`, name: fn.name ?? '' });
        }
        if (typeof fn.arguments === 'string' && fn.arguments !== '') {
          this.push(
            event('content_block_delta', {
              type: 'content_block_delta',
              index: this.#block!.index,
              delta: { type: 'input_json_delta', partial_json: fn.arguments },
            }),
          );
        }
      }
      if (typeof c.finish_reason === 'string') {
        this.#stopReason = STOP_REASONS[c.finish_reason] ?? 'end_turn';
        this.#finished = true;
      }
    }
  }

  #start(obj: Json): void {
    if (this.#started) return;
    this.#started = true;
    this.push(
      event('message_start', {
        type: 'message_start',
        message: {
          id: `msg_${String(obj.id ?? Date.now()).replace(/^chatcmpl-/, '')}`,
          type: 'message',
          role: 'assistant',
          model: this.#model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      }),
    );
  }

  #open(kind: BlockKind, toolIndex?: number, tool?: { id: unknown; name: unknown }): void {
    if (this.#block?.kind === kind && (kind !== 'tool' || this.#block.toolIndex === toolIndex)) return;
    this.#close();
    const index = this.#nextIndex++;
    this.#block = toolIndex === undefined ? { index, kind } : { index, kind, toolIndex };
    const content_block =
      kind === 'text'
        ? { type: 'text', text: '' }
        : kind === 'thinking'
          ? { type: 'thinking', thinking: '' }
          : { type: 'tool_use', id: tool?.id, name: tool?.name, input: {} };
    this.push(event('content_block_start', { type: 'content_block_start', index, content_block }));
  }

  #close(): void {
    if (!this.#block) return;
    this.push(event('content_block_stop', { type: 'content_block_stop', index: this.#block.index }));
    this.#block = undefined;
  }

  #end(): void {
    if (!this.#started) this.#start({});
    this.#close();
    this.push(
      event('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: this.#stopReason ?? 'end_turn', stop_sequence: null },
        usage: { input_tokens: this.#input, output_tokens: this.#output },
      }),
    );
    this.push(event('message_stop', { type: 'message_stop' }));
  }
}
