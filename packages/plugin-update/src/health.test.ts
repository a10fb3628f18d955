import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AgentAccess, type AgentEvent, silentLogger } from '@usepod-agent/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HealthReporter } from './health.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-health-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the trial’s health report', () => {
  it('records a model an engine names `__proto__` like any other: the launcher sees its self-test pass', async () => {
    const path = join(dir, 'health.json');
    const ids = ['__proto__', 'constructor', 'm1'];
    const agent = {
      selftest: async () => ids.map((model) => ({ model, ok: true })),
    } as unknown as AgentAccess;
    const h = new HealthReporter(path, '1.0.1', agent, silentLogger);
    h.onEvent({ type: 'connected' } as AgentEvent);
    h.onEvent({
      type: 'capabilities',
      frame: { models: ids.map((model_id) => ({ model_id })) },
    } as AgentEvent);
    // What the launcher reads (launcher.mjs verdict): every advertised model has a passing self-test.
    await vi.waitFor(
      async () => {
        const report = JSON.parse(await readFile(path, 'utf8')) as {
          advertised: string[];
          selftests: Record<string, string>;
        };
        expect(report.advertised).toEqual(ids);
        expect(
          report.advertised.every(
            (m) => Object.hasOwn(report.selftests, m) && report.selftests[m] === 'pass',
          ),
        ).toBe(true);
      },
      { timeout: 10_000 },
    );
  });
});
