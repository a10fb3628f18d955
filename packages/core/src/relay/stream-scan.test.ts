import { describe, expect, it } from 'vitest';
import { StreamScanner } from './stream-scan.js';

const vllmStream = [
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
  '',
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"say \\"error\\" and usage"},"finish_reason":null}]}',
  '',
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length","stop_reason":null}]}',
  '',
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"total_tokens":20,"completion_tokens":8}}',
  '',
  'data: [DONE]',
  '',
  '',
].join('\n');

function scanInPieces(text: string, cuts: number[]) {
  const buf = Buffer.from(text);
  const s = new StreamScanner();
  let start = 0;
  for (const c of [...cuts, buf.length]) {
    s.push(buf.subarray(start, c));
    start = c;
  }
  return s.end();
}

describe('StreamScanner', () => {
  it('reads usage, finish and [DONE] whatever the chunk boundaries', () => {
    const len = Buffer.byteLength(vllmStream);
    for (let cut = 1; cut < len; cut++) {
      const r = scanInPieces(vllmStream, [cut]);
      expect(r.inputTokens, `cut at ${cut}`).toBe(12);
      expect(r.outputTokens).toBe(8);
      expect(r.sawDone).toBe(true);
      expect(r.sawFinish).toBe(true);
      expect(r.streamError).toBeUndefined();
    }
    // One byte per push.
    const bytes = Array.from({ length: len - 1 }, (_, i) => i + 1);
    expect(scanInPieces(vllmStream, bytes).outputTokens).toBe(8);
  });

  it('handles CRLF line endings and SSE comments', () => {
    const r = scanInPieces(`: ping\r\n\r\n${vllmStream.replaceAll('\n', '\r\n')}`, [7]);
    expect(r.inputTokens).toBe(12);
    expect(r.sawDone).toBe(true);
  });

  it('sees an error event even when [DONE] follows (vLLM)', () => {
    const text =
      'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}\n\ndata: [DONE]\n\n';
    const r = scanInPieces(text, [30]);
    expect(r.streamError).toBe('boom');
    expect(r.sawDone).toBe(true);
  });

  it('flags a stream that ends without [DONE] or a finish reason (Ollama /v1 error)', () => {
    const r = scanInPieces(
      'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\ndata: {}\n\n',
      [],
    );
    expect(r.sawDone).toBe(false);
    expect(r.sawFinish).toBe(false);
  });

  it('reads Anthropic usage from message_start and message_delta', () => {
    const text = [
      'event: message_start',
      'data: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":25,"output_tokens":1}}}',
      '',
      'event: content_block_delta',
      'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
      '',
      'event: message_delta',
      'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}',
      '',
      'event: message_stop',
      'data: {"type":"message_stop"}',
      '',
      '',
    ].join('\n');
    const r = scanInPieces(text, [50, 120]);
    expect(r.inputTokens).toBe(25);
    expect(r.outputTokens).toBe(15);
    expect(r.sawFinish).toBe(true);
  });

  it('falls back to llama.cpp timings and Ollama NDJSON counts', () => {
    const llama =
      'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"timings":{"cache_n":236,"prompt_n":1,"predicted_n":35}}\n\ndata: [DONE]\n\n';
    const r = scanInPieces(llama, []);
    expect(r.inputTokens).toBe(237);
    expect(r.outputTokens).toBe(35);
    const ndjson =
      '{"message":{"content":"a"},"done":false}\n{"done":true,"prompt_eval_count":26,"eval_count":282}\n';
    const n = scanInPieces(ndjson, [10]);
    expect(n.inputTokens).toBe(26);
    expect(n.outputTokens).toBe(282);
    expect(n.sawFinish).toBe(true);
  });

  it('keeps the last usage seen (continuous usage stats)', () => {
    const text =
      'data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: {"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n';
    expect(scanInPieces(text, []).outputTokens).toBe(2);
  });
});
