import { open } from 'node:fs/promises';

/**
 * A GGUF v3 writer for tiny random-weight llama models that a real `llama-server` loads and runs: garbage
 * text, but the engine's real behaviour (streams, usage, slots, context limits, cancellation). Facts from
 * ../shared/REAL-ENGINES.md; the format is GGUF's (magic, version 3, key-value metadata, tensor infos,
 * aligned tensor data, little-endian).
 */

const GGUF_MAGIC = 0x46554747; // "GGUF"
const ALIGNMENT = 32;
enum ValueType {
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  STRING = 8,
  ARRAY = 9,
}
enum TensorType {
  F32 = 0,
  F16 = 1,
}

type Meta =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'str'; value: string }
  | { type: 'strs'; value: string[] }
  | { type: 'f32s'; value: number[] }
  | { type: 'i32s'; value: number[] };

export interface LlamaModelSpec {
  name: string;
  nEmbd: number;
  nHead: number;
  nFf: number;
  nLayer: number;
  contextLength: number;
  /** Weight matrices in F16 (norms stay F32). */
  f16?: boolean;
  /** Seed of the random weights: the same spec makes the same file. */
  seed?: number;
}

/** ~750 KB, ~11k tokens/s on 2 cores: a whole stream in tens of ms. */
export const TINY_MODEL: LlamaModelSpec = {
  name: 'usepod-tiny',
  nEmbd: 64,
  nHead: 4,
  nFf: 128,
  nLayer: 2,
  contextLength: 512,
};
/** ~56 MB, ~600 tokens/s on 2 cores: slow enough to cancel mid-stream. */
export const SLOW_MODEL: LlamaModelSpec = {
  name: 'usepod-slow',
  nEmbd: 768,
  nHead: 12,
  nFf: 2048,
  nLayer: 4,
  contextLength: 2048,
  f16: true,
};

/** Words whose every prefix is a piece, so SentencePiece tokenizes them whole (REAL-ENGINES.md). */
const WORDS = [
  'hello',
  'there',
  'world',
  'the',
  'a',
  'one',
  'two',
  'three',
  'four',
  'five',
  'word',
  'hi',
  'say',
  'test',
];

interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Tokens that must never be sampled: control, byte and end-of-text tokens. */
  silent: Set<number>;
}

function vocabulary(): Vocab {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  const silent = new Set([0, 1, 2]);
  for (let b = 0; b < 256; b++) {
    silent.add(tokens.length);
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const pieces = new Set<string>();
  for (const w of WORDS) for (let i = 1; i <= w.length; i++) pieces.add(`\u2581${w.slice(0, i)}`);
  for (const p of pieces) {
    tokens.push(p);
    types.push(1);
  }
  // Longer pieces score higher, so whole words win.
  const scores = tokens.map((t, i) => (types[i] === 1 ? -100 + t.length : 0));
  return { tokens, scores, types, silent };
}

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A deterministic PRNG (mulberry32): the same seed, the same weights. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** IEEE 754 half from a float (round to nearest; the values here are small and finite). */
function toHalf(f: number): number {
  F32[0] = f;
  const x = U32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp <= 0) return sign; // too small for a normal half: zero
  if (exp >= 31) return sign | 0x7c00;
  return sign | (exp << 10) | ((mant + 0x1000) >>> 13);
}

interface Tensor {
  name: string;
  /** Row length first, as GGUF lists dimensions. */
  dims: number[];
  type: TensorType;
  fill: (i: number, row: number) => number;
}

class Writer {
  readonly parts: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  pad(): void {
    const rest = this.size % ALIGNMENT;
    if (rest) this.push(Buffer.alloc(ALIGNMENT - rest));
  }
}

function writeMeta(w: Writer, key: string, m: Meta): void {
  w.str(key);
  switch (m.type) {
    case 'u32':
      w.u32(ValueType.UINT32);
      w.u32(m.value);
      break;
    case 'f32':
      w.u32(ValueType.FLOAT32);
      w.f32(m.value);
      break;
    case 'str':
      w.u32(ValueType.STRING);
      w.str(m.value);
      break;
    case 'strs':
      w.u32(ValueType.ARRAY);
      w.u32(ValueType.STRING);
      w.u64(m.value.length);
      for (const s of m.value) w.str(s);
      break;
    case 'f32s':
      w.u32(ValueType.ARRAY);
      w.u32(ValueType.FLOAT32);
      w.u64(m.value.length);
      for (const v of m.value) w.f32(v);
      break;
    case 'i32s':
      w.u32(ValueType.ARRAY);
      w.u32(ValueType.INT32);
      w.u64(m.value.length);
      for (const v of m.value) w.i32(v);
      break;
  }
}

/** Writes the model to `path` (a few ms for the tiny one, about a second for the slow one). */
export async function writeLlamaGguf(path: string, spec: LlamaModelSpec): Promise<void> {
  const vocab = vocabulary();
  const nVocab = vocab.tokens.length;
  const { nEmbd, nFf } = spec;
  const rand = prng(spec.seed ?? 14);
  const random = (scale: number) => () => (rand() * 2 - 1) * scale;
  const one = () => 1;
  const matrix = spec.f16 ? TensorType.F16 : TensorType.F32;
  const tensors: Tensor[] = [];
  const add = (name: string, dims: number[], fill: Tensor['fill'], type = matrix) =>
    tensors.push({ name, dims, type, fill });
  add('token_embd.weight', [nEmbd, nVocab], random(0.5));
  add('output_norm.weight', [nEmbd], one, TensorType.F32);
  // Other values than token_embd, or the model repeats one token; silent tokens' rows zeroed.
  const out = random(0.5);
  add('output.weight', [nEmbd, nVocab], (_i, row) => (vocab.silent.has(row) ? 0 : out()));
  for (let l = 0; l < spec.nLayer; l++) {
    add(`blk.${l}.attn_norm.weight`, [nEmbd], one, TensorType.F32);
    for (const t of ['attn_q', 'attn_k', 'attn_v', 'attn_output'])
      add(`blk.${l}.${t}.weight`, [nEmbd, nEmbd], random(0.1));
    add(`blk.${l}.ffn_norm.weight`, [nEmbd], one, TensorType.F32);
    add(`blk.${l}.ffn_gate.weight`, [nEmbd, nFf], random(0.1));
    add(`blk.${l}.ffn_up.weight`, [nEmbd, nFf], random(0.1));
    add(`blk.${l}.ffn_down.weight`, [nFf, nEmbd], random(0.1));
  }
  const meta: [string, Meta][] = [
    ['general.architecture', { type: 'str', value: 'llama' }],
    ['general.name', { type: 'str', value: spec.name }],
    ['general.alignment', { type: 'u32', value: ALIGNMENT }],
    ['llama.context_length', { type: 'u32', value: spec.contextLength }],
    ['llama.embedding_length', { type: 'u32', value: nEmbd }],
    ['llama.block_count', { type: 'u32', value: spec.nLayer }],
    ['llama.feed_forward_length', { type: 'u32', value: nFf }],
    ['llama.attention.head_count', { type: 'u32', value: spec.nHead }],
    ['llama.attention.head_count_kv', { type: 'u32', value: spec.nHead }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['llama.rope.dimension_count', { type: 'u32', value: nEmbd / spec.nHead }],
    ['llama.vocab_size', { type: 'u32', value: nVocab }],
    ['tokenizer.ggml.model', { type: 'str', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'strs', value: vocab.tokens }],
    ['tokenizer.ggml.scores', { type: 'f32s', value: vocab.scores }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: vocab.types }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: 0 }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 2 }],
    ['tokenizer.chat_template', { type: 'str', value: CHATML }],
  ];
  const head = new Writer();
  head.u32(GGUF_MAGIC);
  head.u32(3);
  head.u64(tensors.length);
  head.u64(meta.length);
  for (const [k, v] of meta) writeMeta(head, k, v);
  let offset = 0;
  const sizes = tensors.map((t) => t.dims.reduce((a, b) => a * b, 1) * (t.type === TensorType.F16 ? 2 : 4));
  tensors.forEach((t, i) => {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    offset += sizes[i]!;
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  });
  head.pad();
  const fh = await open(path, 'w');
  try {
    await fh.write(Buffer.concat(head.parts));
    for (const [i, t] of tensors.entries()) {
      const rowLength = t.dims[0]!;
      const n = sizes[i]! / (t.type === TensorType.F16 ? 2 : 4);
      // Typed arrays in the host's byte order: little-endian, as GGUF wants, on x86_64 (the only host here).
      const values = t.type === TensorType.F16 ? new Uint16Array(n) : new Float32Array(n);
      for (let k = 0; k < n; k++) {
        const v = t.fill(k, Math.floor(k / rowLength));
        values[k] = t.type === TensorType.F16 ? toHalf(v) : v;
      }
      const data = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
      await fh.write(data);
      const pad = (ALIGNMENT - (data.length % ALIGNMENT)) % ALIGNMENT;
      if (pad) await fh.write(Buffer.alloc(pad));
    }
  } finally {
    await fh.close();
  }
}
