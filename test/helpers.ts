import type { ConfigInput } from '@usepod-agent/core';
import ollamaPlugin from '@usepod-agent/plugin-ollama';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  type EngineEmulator,
  holdsPlugin,
  type TestAgent,
  type TestAgentOptions,
  VllmEmulator,
} from '@usepod-agent/testkit';

export interface Rig {
  t: TestAgent;
  /** Places and releases holds as a feature plugin would (GPU yielding, a heat guard). */
  hold(name: string, reason: string): void;
  release(name: string): void;
  engine: VllmEmulator;
  session: CoordinatorSession;
  close(): Promise<void>;
}

/** An agent serving one emulated vLLM, authenticated with a local coordinator. */
export async function rig(
  opts: { engine?: VllmEmulator; config?: ConfigInput; extraEngines?: EngineEmulator[] } & Omit<
    TestAgentOptions,
    'config'
  > = {},
): Promise<Rig> {
  const engine = opts.engine ?? (await new VllmEmulator().start());
  const holds = holdsPlugin();
  const t = await createTestAgent({
    ...opts,
    plugins: [...(opts.plugins ?? [vllmPlugin, ollamaPlugin]), holds.plugin],
    config: { backends: [{ kind: 'vllm', url: engine.url }], ...opts.config },
  });
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await t.coordinator.firstAuthenticated();
  await session.capabilities();
  return {
    t,
    hold: holds.hold,
    release: holds.release,
    engine,
    session,
    async close() {
      await t.close();
      await engine.close();
      for (const e of opts.extraEngines ?? []) await e.close();
    },
  };
}

export const hello = { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5 };
