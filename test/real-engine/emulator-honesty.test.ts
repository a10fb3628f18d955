import { LlamacppEmulator } from '@usepod-agent/testkit';
import { ensureTinyModel, LlamaServer } from '@usepod-agent/testkit/real';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The testkit's llama.cpp emulator kept honest: the same requests go to the real server and to the
 * emulator, and their answers are compared by shape (status, content type, JSON field sets, SSE event
 * order and fields, error shapes). Values (ids, times, text) may differ; shapes may not, so the emulator
 * cannot drift from the engine again.
 */
const skip = process.env.USEPOD_SKIP_REAL_ENGINES === '1';
const API_KEY = 'sk-honesty-0123456789';

/** The shape of a JSON value: objects by their sorted keys (recursively), arrays by their first element. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 0 ? [] : [shape(v[0])];
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, shape((v as Record<string, unknown>)[k])]),
    );
  }
  return v === null ? null : typeof v;
}

/** An event stream as its events' shapes, comments left out, consecutive repeats folded into one. */
function streamShape(text: string): string[] {
  const out: string[] = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l && !l.startsWith(':'));
    if (lines.length === 0) continue;
    const event = lines
      .find((l) => l.startsWith('event:'))
      ?.slice(6)
      .trim();
    const data =
      lines
        .find((l) => l.startsWith('data:'))
        ?.slice(5)
        .trim() ?? '';
    const body = data === '[DONE]' ? '[DONE]' : JSON.stringify(shape(JSON.parse(data)));
    const entry = `${event ? `${event} ` : ''}${body}`;
    if (out.at(-1) !== entry) out.push(entry);
  }
  return out;
}

interface Answer {
  status: number;
  type: string;
  body: unknown;
}

/** A fresh connection per request: llama-server closes some after an error, and a reused one may be gone. */
async function ask(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const dispatcher = new UndiciAgent();
  const res = await undiciFetch(`${base}${path}`, { ...(init as object), dispatcher });
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!;
  const text = await res.text();
  const body =
    type === 'text/event-stream'
      ? streamShape(text)
      : text.startsWith('{') || text.startsWith('[')
        ? shape(JSON.parse(text))
        : text;
  return { status: res.status, type, body };
}

const post = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

describe.skipIf(skip)('the llama.cpp emulator answers like llama-server b11669', () => {
  let real: LlamaServer;
  let locked: LlamaServer;
  let emu: LlamacppEmulator;
  let emuLocked: LlamacppEmulator;
  beforeAll(async () => {
    const model = await ensureTinyModel();
    real = await LlamaServer.start({ model, alias: 'tiny', ctx: 512, parallel: 2 });
    locked = await LlamaServer.start({ model, alias: 'tiny', ctx: 512, parallel: 2, apiKey: API_KEY });
    const models = [{ id: 'tiny', contextWindow: 256, trainContext: 512 }];
    emu = await new LlamacppEmulator({ models, slots: 2, metricsEnabled: true }).start();
    emuLocked = await new LlamacppEmulator({
      models,
      slots: 2,
      metricsEnabled: true,
      apiKey: API_KEY,
    }).start();
  });
  afterAll(async () => {
    await real?.stop();
    await locked?.stop();
    await emu?.close();
    await emuLocked?.close();
  });

  const both = async (path: string, init?: RequestInit, which: 'open' | 'locked' = 'open') => {
    const [r, e] = which === 'open' ? [real.url, emu.url] : [locked.url, emuLocked.url];
    return { real: await ask(r, path, init), emulator: await ask(e, path, init) };
  };

  for (const path of ['/health', '/v1/models', '/props', '/slots', '/no-such-route']) {
    it(`GET ${path}`, async () => {
      const { real: r, emulator: e } = await both(path);
      expect(e).toEqual(r);
    });
  }

  for (const [name, extra] of [
    ['without include_usage', {}],
    ['with include_usage', { stream_options: { include_usage: true } }],
  ] as const) {
    it(`a streamed chat completion, ${name}`, async () => {
      const body = {
        messages: [{ role: 'user', content: 'hello there' }],
        max_tokens: 4,
        stream: true,
        ...extra,
      };
      const { real: r, emulator: e } = await both('/v1/chat/completions', post(body));
      expect(e).toEqual(r);
    });
  }

  it('a streamed Messages request', async () => {
    const body = {
      model: 'tiny',
      max_tokens: 4,
      stream: true,
      messages: [{ role: 'user', content: 'hello there' }],
    };
    const { real: r, emulator: e } = await both('/v1/messages', post(body));
    // The cache fields depend on what was cached before: compare with them set on both sides.
    const norm = (a: Answer) => JSON.stringify(a).replace(/"cache_read_input_tokens":"number",/g, '');
    expect(norm(e)).toEqual(norm(r));
  });

  it('a prompt over the context, bad JSON, and a missing or wrong API key', async () => {
    const long = { messages: [{ role: 'user', content: 'hello '.repeat(300) }], max_tokens: 4, stream: true };
    const overflow = await both('/v1/chat/completions', post(long));
    expect(overflow.emulator).toEqual(overflow.real);
    const bad = await both('/v1/chat/completions', post('{bad'));
    expect(bad.emulator).toEqual(bad.real);
    const hi = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true };
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const denied = await both('/v1/chat/completions', post(hi, headers), 'locked');
      expect(denied.emulator).toEqual(denied.real);
    }
    const health = await both('/health', {}, 'locked');
    expect(health.emulator).toEqual(health.real);
  });
});
