import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, expect, it } from 'vitest';
import { createEmbeddedAgent } from './index.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

it('embeds the agent with a pricing policy, a job audit log and a clean shutdown', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'usepod-embed-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const coordinator = await TestCoordinator.start();
  cleanup.push(() => coordinator.close());
  const engine = await new VllmEmulator({
    models: [
      { id: 'cheap', contextWindow: 4096 },
      { id: 'pricey', contextWindow: 4096 },
    ],
  }).start();
  cleanup.push(() => engine.close());
  const auditFile = join(dir, 'audit.jsonl');
  const { agent, audit } = createEmbeddedAgent({
    config: {
      coordinator: { url: coordinator.url },
      identity: { key_path: join(dir, 'id.key') },
      backends: [{ kind: 'vllm', url: engine.url }],
      pricing: {
        models: {
          cheap: { input_per_1m: 100_000, output_per_1m: 100_000 },
          pricey: { input_per_1m: 1, output_per_1m: 900_000 },
        },
      },
      observability: { prometheus_addr: 'off' },
    },
    minOutputPer1m: 400_000,
    auditFile,
    allowInsecure: true,
  });
  await agent.start();
  const session = await coordinator.firstAuthenticated();
  const caps = await session.capabilities();
  expect(
    (caps.models as { model_id: string; output_per_1m: number }[]).map((m) => [m.model_id, m.output_per_1m]),
  ).toEqual([
    ['cheap', 400_000],
    ['pricey', 900_000],
  ]);
  const done = await session.dispatch({ model_id: 'cheap' }).done();
  expect(done.type).toBe('job_done');
  await agent.stop();
  expect(audit).toHaveLength(1);
  const written = (await readFile(auditFile, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(written).toHaveLength(1);
  expect(written[0]).toMatchObject({ model: 'cheap', outcome: 'done', outputTokens: 16 });
  expect(Date.parse(written[0].receivedAt)).toBeLessThanOrEqual(Date.parse(written[0].endedAt));
  // Prompts never reach the audit log.
  expect(JSON.stringify(written)).not.toContain('hi');
});
