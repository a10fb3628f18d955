import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgent, silentLogger } from '@usepod-agent/core';
import { startDemoEngine, TestCoordinator } from '@usepod-agent/testkit';
import { builtinPlugins } from './engines.js';

/**
 * The end-to-end demo: a local coordinator and an emulated engine (the testkit's choice) in this
 * process, the real agent between them with the built-in plugin for that engine, and four jobs that show
 * what the agent does with a normal stream, a cancel, an unknown model and a deadline.
 */
export async function runDemo(
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<void> {
  const say = (s = '') => write(s);
  const dir = await mkdtemp(join(tmpdir(), 'usepod-demo-'));
  const coordinator = await TestCoordinator.start();
  const { kind, engine } = await startDemoEngine();
  const plugins = await builtinPlugins();
  const agent = createAgent({
    config: {
      coordinator: { url: coordinator.url },
      identity: { key_path: join(dir, 'identity.key') },
      backends: [{ kind, url: engine.url }],
      pricing: {
        default_input_per_1m: 500_000,
        default_output_per_1m: 750_000,
        models: { 'meta-llama/Llama-3.3-70B-Instruct': { input_per_1m: 300_000, output_per_1m: 450_000 } },
      },
      limits: { max_concurrent: 8 },
    },
    plugins,
    allowInsecure: true,
    logger: silentLogger,
    // The protocol's heartbeat period is 15 s; the demo shortens it so one shows up.
    timing: { heartbeatIntervalMs: 1_000 },
  });
  try {
    // Loaded as `start()` would load them: the engine's title is its plugin's word.
    await agent.load();
    const title = agent.kinds.get(kind)?.title ?? kind;
    say(
      `Use Pod agent demo: a local coordinator, an emulated ${title} engine, and the real agent between them.`,
    );
    say(`  coordinator  ${coordinator.url}`);
    say(`  engine       ${title} emulator at ${engine.url}`);
    say();
    await agent.start();
    const session = await coordinator.firstAuthenticated();
    say(`1. Pairing: the agent created an Ed25519 identity (${agent.identity?.fingerprint}),`);
    say("   signed the coordinator's challenge nonce, and the coordinator verified it.");
    say(`   -> authenticated as provider ${session.providerId}`);
    const caps = await session.capabilities();
    say();
    say('2. Capabilities: the models the engine serves, with prices (micro-USDC per 1M tokens):');
    for (const m of caps.models as Record<string, unknown>[]) {
      say(
        `   - ${String(m.model_id)}  in=${m.input_per_1m} out=${m.output_per_1m}  context=${m.context_window}  via ${m.backend}`,
      );
    }
    say();
    say("3. A streamed job: the engine's event stream is relayed byte for byte.");
    const job = session.dispatch({
      model_id: 'meta-llama/Llama-3.3-70B-Instruct',
      request: { messages: [{ role: 'user', content: 'Say something' }], max_tokens: 12 },
    });
    const done = await job.done();
    const text = job
      .text()
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map(
        (l) =>
          (JSON.parse(l.slice(6)) as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta
            ?.content ?? '',
      )
      .join('');
    say(`   text relayed: "${text.trim()}"`);
    say(
      `   -> ${String(done.type)}: ${JSON.stringify(done.tokens)} in ${String(done.duration_ms)} ms (${job.body().length} bytes in ${job.chunks.length} chunks)`,
    );
    say();
    say('4. A cancelled job: the coordinator sends job_cancel after the first chunk.');
    engine.behave({ kind: 'slow', tokenDelayMs: 200 });
    const cancelled = session.dispatch({
      model_id: 'Qwen/Qwen3-14B',
      request: { messages: [{ role: 'user', content: 'long answer' }], max_tokens: 100 },
    });
    await cancelled.firstChunk();
    const engineSawClose = engine.aborted.next(() => true, 5_000, 'the engine to see the disconnect');
    session.cancel(cancelled.jobId);
    await engineSawClose;
    say(
      '   -> the agent closed the upstream request (the engine saw the disconnect) and sent no terminal frame.',
    );
    say();
    say('5. A job for a model nobody serves:');
    const unknown = await session.dispatch({ model_id: 'no-such/model' }).done();
    say(`   -> ${String(unknown.type)} ${String(unknown.error_code)}: ${String(unknown.message)}`);
    say();
    say('6. A job past its deadline (the engine hangs, deadline_ms is 300):');
    engine.behave({ kind: 'hang' });
    const late = await session.dispatch({ model_id: 'Qwen/Qwen3-14B', deadline_ms: 300 }).done();
    say(`   -> ${String(late.type)} ${String(late.error_code)}: ${String(late.message)}`);
    say();
    const hb = await session.nextFrame('heartbeat', 5_000);
    const { type: _t, ...figures } = hb;
    say(`7. Heartbeat with real measurements: ${JSON.stringify(figures)}`);
    say();
    say(
      '8. Self-test, the figures to set prices by (`usepod-agent selftest`; [selftest] to run it on a timer):',
    );
    for (const r of await agent.selftest()) {
      say(
        `   - ${r.model}  ${r.ok ? 'ok' : `failed: ${r.error}`}  first token ${r.ttftMs ?? '-'} ms  ${r.tokensPerSecond ?? '-'} tok/s`,
      );
    }
    say();
    say('Done. Run `npm test` for the whole suite; see README.md to run the agent against your own engine.');
  } finally {
    await agent.stop({ graceMs: 0 });
    await engine.close();
    await coordinator.close();
    await rm(dir, { recursive: true, force: true });
  }
}
