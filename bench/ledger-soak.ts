/**
 * Memory per job with the ledger on (issue 28): an agent in its own process (the ledger plugin, a vLLM
 * emulator) is sent 200,000 jobs for models no engine serves, each refused and recorded, 256 in flight.
 * Its RSS and heap after a full GC are printed before, along the way and after; they must stay flat.
 *
 *   npm run build && node --import tsx bench/ledger-soak.ts [jobs] [--off]
 *
 * `--off` runs the same with `[ledger] path = "off"`, `--sync` with the ledger written on the event loop
 * (the journal before issue 28: `Ledger.write` called by core directly), for comparison.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { verifySignature } from '../packages/core/src/identity/identity.js';

interface Usage {
  rss: number;
  heap: number;
  external: number;
}

if (process.argv[2] === '--agent') await agentProcess();
else await driver();

async function agentProcess(): Promise<void> {
  const { createAgent, silentLogger } = await import('@usepod-agent/core');
  const vllm = (await import('@usepod-agent/plugin-vllm')).default;
  const { default: ledger, Ledger } = await import('@usepod-agent/plugin-ledger');
  const { VllmEmulator } = await import('@usepod-agent/testkit');
  let agent: ReturnType<typeof createAgent> | undefined;
  const usage = (): Usage => {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    return { rss: m.rss, heap: m.heapUsed, external: m.external };
  };
  process.on('message', async (msg: { cmd: string; coordinator?: string; off?: boolean; sync?: boolean }) => {
    if (msg.cmd === 'start') {
      const engine = await new VllmEmulator().start();
      const dir = mkdtempSync(join(tmpdir(), 'usepod-soak-'));
      const sync = Ledger.open(join(dir, 'sync.db'));
      const syncLedger = {
        name: 'sync-ledger',
        apiVersion: 1,
        apply: (_h: unknown, ctx: { provideJournal(j: { write(r: never[]): void }): boolean }) =>
          void ctx.provideJournal({ write: (r) => sync.write(r) }),
      };
      agent = createAgent({
        config: {
          coordinator: { url: msg.coordinator! },
          identity: { key_path: join(dir, 'identity.key') },
          backends: [{ kind: 'vllm', url: engine.url }],
          limits: { max_concurrent: 256 },
          observability: { prometheus_addr: 'off' },
          ledger: { path: msg.off || msg.sync ? 'off' : join(dir, 'ledger.db') },
        } as never,
        plugins: [vllm, ledger(), ...(msg.sync ? [syncLedger as never] : [])],
        allowInsecure: true,
        logger: silentLogger,
        timing: { heartbeatIntervalMs: 3_600_000 },
      });
      await agent.start();
      process.send!({ started: true });
    } else if (msg.cmd === 'usage') {
      // Let the ledger's thread and the journal settle first.
      await new Promise((r) => setTimeout(r, 500));
      process.send!(usage());
    } else if (msg.cmd === 'stop') {
      await agent?.stop({ graceMs: 0 });
      process.exit(0);
    }
  });
}

async function driver(): Promise<void> {
  const total = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 200_000);
  const off = process.argv.includes('--off');
  const sync = process.argv.includes('--sync');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/provider/connect' });
  await new Promise((r) => wss.once('listening', r));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/provider/connect`;
  let send: ((s: string) => void) | undefined;
  let onEnd: (() => void) | undefined;
  const ready = new Promise<void>((resolve) => {
    wss.on('connection', (ws) => {
      const nonce = Buffer.alloc(32, 7);
      ws.send(JSON.stringify({ type: 'auth_challenge', nonce: nonce.toString('base64') }));
      ws.on('message', (data: Buffer) => {
        const f = JSON.parse(data.toString()) as Record<string, unknown>;
        if (f.type === 'auth_response') {
          const ok = verifySignature(nonce, String(f.signature), String(f.pubkey));
          ws.send(
            JSON.stringify(ok ? { type: 'auth_ok', provider_id: 'prov_soak' } : { type: 'auth_failed' }),
          );
        } else if (f.type === 'capabilities') {
          send = (s) => ws.send(s);
          resolve();
        } else if (f.type === 'job_done' || f.type === 'job_error') onEnd?.();
      });
    });
  });
  const child = fork(fileURLToPath(import.meta.url), ['--agent'], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
  });
  process.on('exit', () => child.kill('SIGKILL'));
  const replies: ((m: unknown) => void)[] = [];
  child.on('message', (m) => replies.shift()?.(m));
  const ask = <T>(m: object) =>
    new Promise<T>((r) => {
      replies.push(r as (m: unknown) => void);
      child.send(m);
    });
  await ask({ cmd: 'start', coordinator: url, off, sync });
  await ready;

  /** Sends `n` jobs for models nobody serves (each id new), `window` in flight. */
  const run = (n: number, window = 256) =>
    new Promise<void>((resolve) => {
      let sent = 0;
      let ended = 0;
      const one = () => {
        const i = sent++;
        send!(
          JSON.stringify({
            type: 'job',
            job_id: randomUUID(),
            model_id: `unknown/model-${i}-${randomUUID()}`,
            request: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
          }),
        );
      };
      onEnd = () => {
        ended++;
        if (ended === n) resolve();
        else if (sent < n) one();
      };
      for (let i = 0; i < Math.min(window, n); i++) one();
    });

  const mb = (b: number) => `${(b / 1_048_576).toFixed(1)} MB`;
  const show = (label: string, u: Usage, base?: Usage) =>
    console.log(
      `${label.padEnd(22)} rss ${mb(u.rss).padStart(9)}  heap ${mb(u.heap).padStart(8)}  external ${mb(u.external).padStart(8)}` +
        (base ? `   (rss ${u.rss >= base.rss ? '+' : ''}${mb(u.rss - base.rss)})` : ''),
    );
  console.log(
    `ledger ${off ? 'off' : sync ? 'on, written on the event loop' : 'on'}: ${total} refused jobs, 256 in flight`,
  );
  // A warm-up round: code paths compiled, pools filled, before the baseline.
  await run(5_000);
  const base = await ask<Usage>({ cmd: 'usage' });
  show('before (after 5,000)', base);
  let done = 0;
  for (const step of [20_000, 50_000, 100_000, total].filter((s) => s <= total)) {
    await run(step - done);
    done = step;
    show(`after ${done.toLocaleString('en')}`, await ask<Usage>({ cmd: 'usage' }), base);
  }
  child.send({ cmd: 'stop' });
  await new Promise((r) => child.once('exit', r));
  wss.close();
  process.exit(0);
}
