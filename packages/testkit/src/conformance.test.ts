import { type AgentPlugin, definePlugin } from '@usepod-agent/core';
import { type BackendLoad, OpenAICompatibleBackend, type StreamRequest } from '@usepod-agent/core/backend';
import vllm, { VllmBackend } from '@usepod-agent/plugin-vllm';
import { describe, expect, it } from 'vitest';
import { runConformance, type TestRunner } from './conformance.js';
import { VllmEmulator } from './emulators/vllm.js';

/** A tiny runner that records which conformance cases pass, to check that the suite catches faults. */
async function runSuite(plugin: AgentPlugin, capacity?: number): Promise<Map<string, string | undefined>> {
  const cases: { name: string; fn: () => unknown }[] = [];
  const before: (() => unknown)[] = [];
  const after: (() => unknown)[] = [];
  const runner: TestRunner = {
    describe: (_n, fn) => fn(),
    it: (name, fn) => cases.push({ name, fn }),
    beforeAll: (fn) => before.push(fn),
    afterAll: (fn) => after.push(fn),
  };
  runConformance({
    plugin,
    kind: 'vllm',
    model: 'Qwen/Qwen3-14B',
    emulator: () => new VllmEmulator().start(),
    test: runner,
    bounds: { deadline: 800, abort: 800 },
    ...(capacity ? { capacity } : {}),
  });
  const results = new Map<string, string | undefined>();
  try {
    for (const b of before) await b();
  } catch (err) {
    // The runner reports a failing beforeAll as the failure of every case.
    for (const c of cases) results.set(c.name, (err as Error).message);
    for (const a of after) await a();
    return results;
  }
  for (const c of cases) {
    try {
      await c.fn();
      results.set(c.name, undefined);
    } catch (err) {
      results.set(c.name, (err as Error).message);
    }
  }
  for (const a of after) await a();
  return results;
}

describe('runConformance', () => {
  it('passes a correct plugin', async () => {
    const results = await runSuite(vllm());
    expect([...results].filter(([, e]) => e)).toEqual([]);
    expect(results.size).toBe(17);
  }, 60_000);

  it('catches a plugin that ignores the abort signal, and one built for another API version', async () => {
    class Deaf extends VllmBackend {
      override stream(req: StreamRequest) {
        // Deaf to the job's abort in both its forms.
        const { abort: _ignored, ...rest } = req;
        return super.stream({ ...rest, signal: new AbortController().signal });
      }
    }
    const deaf = definePlugin(() => ({
      name: 'deaf',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend('vllm', (entry, b) => new Deaf({ url: entry.url!, log: b.log }));
      },
    }));
    const results = await runSuite(deaf());
    const failed = [...results].filter(([, e]) => e).map(([n]) => n);
    expect(failed).toEqual(['honours deadline_ms: backend_timeout, and the engine sees the disconnect']);
    const old = await runSuite({ ...vllm(), apiVersion: 0 });
    expect(old.get('has a name, the current plugin API version, and declares the kind')).toMatch(/API 0/);
  }, 60_000);

  it("holds a plugin to the engine's capacity: one that reports none is caught (issue 28)", async () => {
    const CAPACITY = "reports the engine's capacity, and the agent advertises no more requests at once";
    // A plugin for a one-request-at-a-time engine, written without readLoad: advertised for 8 at once.
    const blind = definePlugin(() => ({
      name: 'blind',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend(
          'vllm',
          (entry, b) => new OpenAICompatibleBackend({ kind: 'vllm', url: entry.url!, log: b.log }),
        );
      },
    }));
    const results = await runSuite(blind(), 1);
    expect([...results].filter(([, e]) => e).map(([n]) => n)).toEqual([CAPACITY]);
    expect(results.get(CAPACITY)).toMatch(
      /the engine runs 1 request\(s\) at once, but probe\(\) reports no capacity: return it as load\.capacity from readLoad\(\)/,
    );
    // The same plugin reporting the engine's one slot passes, and is advertised for one at a time.
    class Counted extends OpenAICompatibleBackend {
      protected override async readLoad(): Promise<BackendLoad> {
        return { capacity: 1 };
      }
    }
    const counted = definePlugin(() => ({
      name: 'counted',
      apiVersion: 1,
      kinds: ['vllm'],
      apply(_h, ctx) {
        ctx.registerBackend('vllm', (entry, b) => new Counted({ kind: 'vllm', url: entry.url!, log: b.log }));
      },
    }));
    const fixed = await runSuite(counted(), 1);
    expect([...fixed].filter(([, e]) => e)).toEqual([]);
  }, 60_000);
});
