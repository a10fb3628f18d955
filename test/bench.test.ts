import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Agent, createAgent, silentLogger } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clock, pct, StreamConsumer } from '../bench/consumer.js';
import { BenchCoordinator } from '../bench/coordinator.js';
import { BatchEngine } from '../bench/engine.js';

/**
 * The benchmark's instruments: its figures (loss, latency, what the agent adds) are only as good as
 * the consumer that counts events, the lean coordinator that decodes job_chunk frames without JSON,
 * and the engine emulator. No timings are asserted here.
 */

const event = (t: number, s: number) =>
  `data: {"choices":[{"delta":{"content":" tok"}}],"t":${t},"s":${s}}\n\n`;

describe('bench consumer', () => {
  it('finds events split at every byte and counts a skipped sequence number as lost', () => {
    const bytes = Buffer.from(event(1, 0) + event(2, 1) + event(3, 3));
    const latencies: number[] = [];
    const c = new StreamConsumer(latencies);
    for (let i = 0; i < bytes.length; i++) c.push(bytes.subarray(i, i + 1), 10 + i);
    expect(c.firstByteAt).toBe(10);
    expect(c.chunks).toBe(3);
    expect(c.lost).toBe(1);
    expect(c.nextSeq).toBe(4);
    expect(c.bytes).toBe(bytes.length);
    expect(latencies).toHaveLength(3);
  });

  it('takes nearest-rank percentiles', () => {
    expect(pct([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(
      pct(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
    ).toBe(99);
    expect(pct([], 50)).toBeNaN();
  });
});

describe('bench engine, coordinator and agent', () => {
  let engine: BatchEngine;
  let engineUrl: string;
  let coord: BenchCoordinator;
  let keyDir: string | undefined;
  let agent: Agent;

  beforeAll(async () => {
    engine = new BatchEngine();
    engineUrl = await engine.start();
    engine.setRate(1000);
    engine.run();
    coord = new BenchCoordinator();
    keyDir = mkdtempSync(join(tmpdir(), 'usepod-bench-test-'));
    agent = createAgent({
      config: {
        coordinator: { url: await coord.listening() },
        identity: { key_path: join(keyDir, 'identity.key') },
        backends: [{ kind: 'vllm', url: engineUrl }],
        observability: { prometheus_addr: 'off' },
      },
      plugins: [vllmPlugin],
      allowInsecure: true,
      logger: silentLogger,
    });
    await agent.start();
    await coord.ready();
  });

  afterAll(async () => {
    await agent?.stop({ graceMs: 0 });
    await coord?.close();
    await engine?.close();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  /** The bytes of a stream with what differs between two runs (stream id, emit time) blanked. */
  const normalised = (c: StreamConsumer) =>
    Buffer.concat(c.parts)
      .toString('utf8')
      .replace(/chatcmpl-b\d+/g, 'chatcmpl-b')
      .replace(/"t":[0-9.]+/g, '"t":0');

  it('delivers the same events on both paths, in order, with nothing lost', async () => {
    const direct = new StreamConsumer([], true);
    const res = await request(`${engineUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: engine.model, messages: [], max_tokens: 4, stream: true }),
    });
    for await (const chunk of res.body) direct.push(chunk as Buffer, clock());

    const viaAgent = new StreamConsumer([], true);
    const done = await coord.dispatch(randomUUID(), viaAgent, 4);

    // Four tokens, the finish chunk and the usage chunk carry a sequence number; [DONE] does not.
    for (const c of [direct, viaAgent]) {
      expect(c.chunks).toBe(6);
      expect(c.lost).toBe(0);
      expect(c.firstByteAt).toBeDefined();
    }
    expect(normalised(viaAgent)).toBe(normalised(direct));
    expect(normalised(viaAgent).endsWith('data: [DONE]\n\n')).toBe(true);
    expect(done).toMatchObject({ type: 'job_done', tokens: { input: 10, output: 4 } });
  });

  it('sees the engine connection close when the coordinator cancels a job', async () => {
    const aborted = new Promise<number>((resolve) => {
      engine.onAbort = resolve;
    });
    const id = randomUUID();
    let firstChunk!: () => void;
    const started = new Promise<void>((resolve) => {
      firstChunk = resolve;
    });
    const consumer = new (class extends StreamConsumer {
      override push(buf: Buffer, now: number): void {
        super.push(buf, now);
        firstChunk();
      }
    })([]);
    void coord.dispatch(id, consumer, 100_000);
    await started;
    expect(engine.active).toBe(1);
    coord.cancel(id);
    expect(await aborted).toBeGreaterThan(0);
    expect(engine.active).toBe(0);
  });
});
