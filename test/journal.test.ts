import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createAgent, definePlugin, type JobRecord, silentLogger } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { VllmEmulator } from '@usepod-agent/testkit';
import { describe, expect, it } from 'vitest';
import { rig } from './helpers.js';

/**
 * The journal comes before the coordinator hears the job ended (issue 18): a terminal frame leaves only
 * after the ledger's write returned. The coordinator runs on another thread, so it sees a frame sent
 * early even while the agent's thread is still inside a slow write.
 */
describe('the job journal', () => {
  it('writes a job’s record before its terminal frame leaves, one write per turn', async () => {
    // Plain Node on that thread (the built testkit), not the runner's source conditions.
    const worker = new Worker(new URL('./fixtures/coordinator-worker.mjs', import.meta.url), {
      execArgv: [],
    });
    const failed = new Promise<never>((_, reject) => worker.on('error', reject));
    const messages: Record<string, unknown>[] = [];
    const next = (key: string) =>
      Promise.race([
        failed,
        new Promise<Record<string, unknown>>((resolve) => {
          const found = messages.find((m) => key in m);
          if (found) return resolve(found);
          const on = (m: Record<string, unknown>) => {
            if (!(key in m)) return;
            worker.off('message', on);
            resolve(m);
          };
          worker.on('message', on);
        }),
      ]);
    worker.on('message', (m) => messages.push(m));
    const { url } = (await next('url')) as { url: string };
    const engine = await new VllmEmulator().start();
    const dir = await mkdtemp(join(tmpdir(), 'usepod-journal-'));
    const writes: { records: JobRecord[]; endedAt: number }[] = [];
    const agent = createAgent({
      config: {
        coordinator: { url },
        identity: { key_path: join(dir, 'identity.key') },
        backends: [{ kind: 'vllm', url: engine.url }],
        observability: { prometheus_addr: 'off' },
      },
      allowInsecure: true,
      plugins: [
        vllmPlugin,
        definePlugin(() => ({
          name: 'slow-journal',
          apiVersion: 1,
          apply: (_hooks, ctx) =>
            void ctx.provideJournal({
              write(records) {
                // A slow disk: 300 ms in which this thread does nothing else.
                const until = Date.now() + 300;
                while (Date.now() < until) {}
                writes.push({ records, endedAt: performance.timeOrigin + performance.now() });
              },
            }),
        })),
      ],
      logger: silentLogger,
    });
    try {
      await agent.start();
      await next('ready');
      worker.postMessage({ dispatch: 'Qwen/Qwen3-14B' });
      const done = (await next('end')) as { end: string; at: number };
      expect(done.end).toBe('job_done');
      expect(writes).toHaveLength(1);
      expect(writes[0]!.records[0]).toMatchObject({
        model: 'Qwen/Qwen3-14B',
        outcome: 'done',
        format: 'openai',
      });
      expect(writes[0]!.records[0]!.inputPer1m).toBeGreaterThan(0);
      // The coordinator heard of the end only after the write had returned.
      expect(done.at).toBeGreaterThan(writes[0]!.endedAt);
    } finally {
      await agent.stop();
      worker.postMessage({ close: true });
      await engine.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('records why each refused job was turned away', async () => {
    const records: JobRecord[] = [];
    const r = await rig({
      config: { limits: { max_tokens_per_minute: 2_000, max_request_bytes: 2_000 } },
      journal: { write: (batch) => void records.push(...batch) },
    });
    try {
      const big = { messages: [{ role: 'user', content: 'x'.repeat(5_000) }] };
      expect(await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: big }).done()).toMatchObject({
        type: 'job_error',
      });
      // The budget turns a job away once some of it is used: one served first.
      expect((await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
      const greedy = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 4_000 };
      expect(await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: greedy }).done()).toMatchObject({
        error_code: 'out_of_capacity',
      });
      const small = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 };
      await r.session.dispatch({ model_id: 'not/served', request: small }).done();
      expect(records.map((x) => x.refusal)).toEqual([
        'request_too_large',
        undefined, // the job served to use some of the budget
        'token_budget',
        'model_not_loaded',
      ]);
    } finally {
      await r.close();
    }
  }, 30_000);
});
