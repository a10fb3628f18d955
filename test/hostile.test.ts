import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import {
  type CoordinatorSession,
  createTestAgent,
  TestCoordinator,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { hello, type Rig, rig } from './helpers.js';

/**
 * The coordinator and the engines as attackers (issue 14): every test here attacks the agent over real
 * sockets and checks that it stays up, bounded, and keeps its secrets, its key and the operator's money.
 */
let r: Rig | undefined;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const c of cleanup.splice(0).reverse()) await c();
});

const MODEL = 'Qwen/Qwen3-14B';
const finish = 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n';

describe('a coordinator closing while jobs stream', () => {
  it('1001 drain:deploy during four slow streams ends the session and nothing else', async () => {
    r = await rig({ config: { limits: { max_concurrent: 16 } } });
    r.engine.always({ kind: 'slow', tokenDelayMs: 2 });
    for (let round = 0; round < 5; round++) {
      const session = round === 0 ? r.session : await r.t.coordinator.nextAuthenticated();
      const jobs = Array.from({ length: 4 }, () =>
        session.dispatch({ model_id: MODEL, request: { ...hello, max_tokens: 2000 } }),
      );
      await Promise.all(jobs.map((j) => j.firstChunk()));
      const next = r.t.coordinator.nextAuthenticated();
      session.drain('drain:deploy');
      await session.closed;
      if (round === 4) await next;
      else void next.catch(() => {});
    }
    r.engine.reset();
    const session = await r.t.coordinator.authenticated.items.at(-1)!;
    expect((await session.dispatch({ model_id: MODEL, request: hello }).done()).type).toBe('job_done');
  });

  it('an oversized frame (the agent closes 1009) during streams ends the session and nothing else', async () => {
    r = await rig({ config: { limits: { max_concurrent: 16, max_request_bytes: 256 * 1024 } } });
    r.engine.always({ kind: 'slow', tokenDelayMs: 2 });
    const jobs = Array.from({ length: 4 }, () =>
      r!.session.dispatch({ model_id: MODEL, request: { ...hello, max_tokens: 2000 } }),
    );
    await Promise.all(jobs.map((j) => j.firstChunk()));
    const next = r.t.coordinator.nextAuthenticated();
    r.session.send(JSON.stringify({ type: 'job_cancel', job_id: 'x'.repeat(2 * 1024 * 1024) }));
    expect((await r.session.closed).code).toBe(1009);
    r.engine.reset();
    const session = await next;
    expect((await session.dispatch({ model_id: MODEL, request: hello }).done()).type).toBe('job_done');
  });

  it('closes in every way at random points during 16 streaming jobs, 200 times: still running and serving', async () => {
    r = await rig({
      config: { limits: { max_concurrent: 32 } },
      timing: { backoffInitialMs: 1, backoffMaxMs: 5 },
    });
    r.engine.always({ kind: 'slow', tokenDelayMs: 1 });
    const ways: ((s: CoordinatorSession) => void)[] = [
      (s) => s.close(1000),
      (s) => s.drain('drain:deploy'),
      (s) => s.drain('drain:operator'),
      (s) => s.close(1002, 'protocol error'),
      (s) => s.close(1009, 'too big'),
      (s) => s.kill(),
    ];
    // A fixed seed: a failure can be replayed.
    let seed = 14;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let session = r.session;
    for (let i = 0; i < 200; i++) {
      for (let j = 0; j < 16; j++)
        session.dispatch({ model_id: MODEL, request: { ...hello, max_tokens: 50 } });
      const at = rand(4);
      // At dispatch, or after 0 to 3 event-loop turns of streaming.
      for (let k = 0; k < at; k++) await new Promise((resolve) => setImmediate(resolve));
      const next = r.t.coordinator.nextAuthenticated(15_000);
      ways[rand(ways.length)]!(session);
      session = await next;
    }
    r.engine.reset();
    const done = await Promise.all(
      Array.from({ length: 16 }, () => session.dispatch({ model_id: MODEL, request: hello }).done()),
    );
    expect(done.every((f) => f.type === 'job_done')).toBe(true);
  }, 120_000);
});

describe('the agent process', () => {
  it('stays up through deploy closes during streams, and never logs through a planted symlink', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { fileURLToPath } = await import('node:url');
    const dir = await mkdtemp(join(tmpdir(), 'usepod-proc-'));
    const coordinator = await TestCoordinator.start();
    const engine = await new VllmEmulator({ tokenDelayMs: 2 }).start();
    cleanup.push(async () => {
      await engine.close();
      await coordinator.close();
      await rm(dir, { recursive: true, force: true });
    });
    const victim = join(dir, 'victim.txt');
    await writeFile(victim, 'untouched\n');
    await symlink(victim, join(dir, 'agent.log'));
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      [
        '[coordinator]',
        `url = "${coordinator.url}"`,
        '[identity]',
        `key_path = "${join(dir, 'identity.key')}"`,
        '[[backends]]',
        'kind = "vllm"',
        `url = "${engine.url}"`,
        '[limits]',
        'max_concurrent = 16',
        '[observability]',
        'prometheus_addr = "off"',
      ].join('\n'),
    );
    const bin = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));
    const child = spawn(process.execPath, [bin, 'run', '--config', cfg, '--allow-insecure'], {
      env: { PATH: process.env.PATH, HOME: dir, USEPOD_AGENT_LOG_FILE: join(dir, 'agent.log') },
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    let exited: number | null | undefined;
    child.on('exit', (code) => {
      exited = code;
    });
    cleanup.push(async () => {
      if (exited === undefined) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    });
    let session = await coordinator.firstAuthenticated(15_000);
    await session.capabilities();
    for (let i = 0; i < 5; i++) {
      const jobs = Array.from({ length: 4 }, () =>
        session.dispatch({ model_id: MODEL, request: { ...hello, max_tokens: 2000 } }),
      );
      await Promise.all(jobs.map((j) => j.firstChunk()));
      const next = coordinator.nextAuthenticated(15_000);
      session.drain('drain:deploy');
      session = await next;
      await session.capabilities();
    }
    engine.tokenDelayMs = 0;
    expect((await session.dispatch({ model_id: MODEL, request: hello }).done()).type).toBe('job_done');
    expect(exited).toBeUndefined();
    expect(await readFile(victim, 'utf8')).toBe('untouched\n');
    expect(err).toContain('not written');
  }, 60_000);
});

describe('what the coordinator may write', () => {
  it('never writes a provider_id with a line break into the identity file, and never signs with a key it chose', async () => {
    const evil = `x\nsecret: ${Buffer.alloc(32, 7).toString('base64')}\npublic: AAAA\nversion: 2`;
    let attempt = 0;
    const coordinator = await TestCoordinator.start({
      authorize: () =>
        ++attempt === 1 ? { ok: true, providerId: evil } : { ok: true, providerId: 'prov_ok' },
    });
    const t = await createTestAgent({ coordinator, logLevel: 'warn' });
    cleanup.push(async () => {
      await t.close();
      await coordinator.close();
    });
    expect((await t.start()).ok).toBe(true);
    const before = await readFile(t.identityPath, 'utf8');
    const first = await coordinator.sessions.waitFor(() => true);
    expect((await first.closed).code).toBe(1002);
    // The testkit coordinator counts a session as authenticated once it sent auth_ok, accepted or not.
    await coordinator.authenticated.waitFor((s) => s.providerId === 'prov_ok');
    await t.agent.waitFor('online');
    const after = await readFile(t.identityPath, 'utf8');
    expect(after).not.toContain('version: 2');
    expect(after.split('\n').filter((l) => l.startsWith('secret:'))).toEqual(
      before.split('\n').filter((l) => l.startsWith('secret:')),
    );
    expect(after).toContain('provider_id: prov_ok');
    expect(t.lines.some((l) => l.includes('provider_id must be'))).toBe(true);
  });

  it('keeps the stored provider id when auth_ok has none (0.3.x)', async () => {
    let withId = true;
    const coordinator = await TestCoordinator.start({
      onConnection: (ws, session) => {
        const nonce = Buffer.alloc(32, 1).toString('base64');
        ws.send(JSON.stringify({ type: 'auth_challenge', nonce }));
        session.frames
          .waitFor((f) => f.type === 'auth_response')
          .then(
            () => {
              ws.send(
                JSON.stringify(withId ? { type: 'auth_ok', provider_id: 'prov_42' } : { type: 'auth_ok' }),
              );
              withId = false;
              (coordinator.authenticated as { push(s: unknown): void }).push(session);
            },
            () => {},
          );
        return true;
      },
    });
    const t = await createTestAgent({ coordinator });
    cleanup.push(async () => {
      await t.close();
      await coordinator.close();
    });
    expect((await t.start()).ok).toBe(true);
    const first = await coordinator.firstAuthenticated();
    await first.capabilities();
    expect(t.agent.providerId).toBe('prov_42');
    const next = coordinator.nextAuthenticated();
    first.drain('drain:deploy');
    const second = await next;
    await second.capabilities();
    expect(t.agent.providerId).toBe('prov_42');
    expect(await readFile(t.identityPath, 'utf8')).toContain('provider_id: prov_42');
  });

  it('writes through a symlinked identity path, keeping the link', async () => {
    const coordinator = await TestCoordinator.start();
    const t = await createTestAgent({ coordinator });
    cleanup.push(async () => {
      await t.close();
      await coordinator.close();
    });
    const real = join(t.dir, 'real.key');
    const { generateIdentity } = await import('../packages/core/src/identity/identity.js');
    await generateIdentity(real).save();
    await symlink(real, t.identityPath);
    expect((await t.start()).ok).toBe(true);
    await coordinator.firstAuthenticated();
    await t.agent.waitFor('online');
    const { lstat } = await import('node:fs/promises');
    expect((await lstat(t.identityPath)).isSymbolicLink()).toBe(true);
    expect(await readFile(real, 'utf8')).toContain('provider_id: prov_1');
  });
});

describe('what a job may run', () => {
  it('runs the advertised model whatever the request names, in both formats', async () => {
    r = await rig({ engine: await new VllmEmulator({ version: '0.11.0' }).start() });
    await r.session.dispatch({ model_id: MODEL, request: { ...hello, model: 'forbidden-cloud:1t' } }).done();
    const openai = r.engine.requests.items.at(-1)!;
    expect(openai.body?.model).toBe(MODEL);
    await r.session
      .dispatch({
        model_id: MODEL,
        format: 'anthropic',
        request: { model: 'forbidden-cloud:1t', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      })
      .done();
    expect(r.engine.requests.items.at(-1)!.body?.model).toBe(MODEL);
  });

  it('always asks for usage, whatever stream_options the client sent, so the budget counts every job', async () => {
    r = await rig({ config: { limits: { max_tokens_per_minute: 600 } } });
    const job = r.session.dispatch({
      model_id: MODEL,
      request: {
        ...hello,
        max_tokens: 300,
        stream_options: { include_usage: false, continuous_usage_stats: false },
      },
    });
    const done = await job.done();
    const sent = r.engine.requests.items.at(-1)!.body!;
    expect(sent.stream_options).toEqual({ include_usage: true, continuous_usage_stats: false });
    expect(done).toMatchObject({ type: 'job_done', tokens: { output: 300 } });
    // 300 output tokens plus the prompt were counted: a second 300-token job no longer fits.
    const refused = await r.session
      .dispatch({
        model_id: MODEL,
        request: { ...hello, max_tokens: 300, stream_options: { include_usage: false } },
      })
      .done();
    expect(refused).toMatchObject({ type: 'job_error', error_code: 'out_of_capacity' });
  });
});

describe('figures an engine reports', () => {
  it('ignores usage of 1e308 or past 2^53: job_done, /status and the budget stay sane', async () => {
    r = await rig({ config: { limits: { max_tokens_per_minute: 100_000 } } });
    for (const bogus of ['1e308', '9007199254740993', '-5']) {
      r.engine.behave({ kind: 'controlled' });
      const job = r.session.dispatch({ model_id: MODEL, request: hello });
      const s = await r.engine.controlled.waitFor((c) => !c.res.writableEnded);
      await s.write('data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n');
      await s.write(finish);
      await s.write(
        `data: {"choices":[],"usage":{"prompt_tokens":${bogus},"completion_tokens":${bogus}}}\n\n`,
      );
      s.end('data: [DONE]\n\n');
      expect(await job.done()).toMatchObject({ type: 'job_done', tokens: { input: 0, output: 0 } });
    }
    const status = r.t.agent.status();
    expect(Number.isSafeInteger(status.earnings.micro_usdc)).toBe(true);
    expect(status.tokens).toEqual({ input: 0, output: 0 });
    // The budget was not locked by a made-up count.
    expect((await r.session.dispatch({ model_id: MODEL, request: hello }).done()).type).toBe('job_done');
  });

  it('keeps one Prometheus series per advertised model, whatever model ids the coordinator sends', async () => {
    r = await rig();
    const jobs = Array.from({ length: 300 }, (_, i) =>
      r!.session.dispatch({ model_id: `made-up/${i}-${randomUUID()}` }),
    );
    for (const j of jobs) expect(await j.done()).toMatchObject({ error_code: 'model_not_loaded' });
    await r.session.dispatch({ model_id: MODEL, request: hello }).done();
    const text = await r.t.agent.metricsText();
    expect(text).not.toContain('made-up/');
    expect(text).toMatch(/usepod_agent_jobs_total\{[^}]*model="other"[^}]*\} 300/);
    expect(text).toContain(`model="${MODEL}"`);
  });

  it('never sends an engine API key to the coordinator, even when the engine echoes it', async () => {
    const KEY = 'sk-engine-9f8e7d6c5b4a39281706';
    const engine = await new VllmEmulator({ apiKey: KEY }).start();
    const t = await createTestAgent({
      plugins: [(await import('@usepod-agent/plugin-vllm')).default],
      config: { backends: [{ kind: 'vllm', url: engine.url, api_key_env: 'VLLM_KEY' }] },
      env: { VLLM_KEY: KEY },
    });
    cleanup.push(async () => {
      await t.close();
      await engine.close();
    });
    expect((await t.start()).ok).toBe(true);
    const session = await t.coordinator.firstAuthenticated();
    await session.capabilities();
    engine.behave({
      kind: 'status',
      status: 400,
      body: JSON.stringify({ error: { message: `bad key ${KEY} in Authorization: Bearer ${KEY}` } }),
    });
    const failed = await session.dispatch({ model_id: MODEL, request: hello }).done();
    expect(failed.type).toBe('job_error');
    const raw = t.coordinator.frames.items
      .filter((f) => f.dir === 'in')
      .map((f) => f.raw)
      .join('\n');
    expect(raw).not.toContain(KEY);
    expect(String(failed.message)).toContain('[redacted]');
  });
});

describe('frames the coordinator may send', () => {
  it('treats constructor, __proto__, toString and friends as unknown types: jobs in flight go on', async () => {
    r = await rig();
    r.engine.behave({ kind: 'controlled' });
    const job = r.session.dispatch({ model_id: MODEL, request: hello });
    const s = await r.engine.controlled.waitFor();
    for (const type of [
      'constructor',
      '__proto__',
      'toString',
      'hasOwnProperty',
      'valueOf',
      '__defineGetter__',
    ])
      r.session.send({ type, job_id: job.jobId });
    r.session.send('{"__proto__":{"type":"job"},"type":"__proto__"}');
    await s.write('data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n');
    s.end(`${finish}data: [DONE]\n\n`);
    expect((await job.done()).type).toBe('job_done');
    expect(r.session.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('survives a flood of 50,000 pings', async () => {
    r = await rig();
    r.session.pauseReading();
    for (let i = 0; i < 50_000; i++) r.session.ws.ping(Buffer.from(String(i)));
    r.session.resumeReading();
    const pong = once(r.session.ws, 'pong');
    expect((await r.session.dispatch({ model_id: MODEL, request: hello }).done()).type).toBe('job_done');
    await pong;
    expect(r.session.ws.readyState).toBe(WebSocket.OPEN);
    expect(r.t.coordinator.sessions.items.length).toBe(1);
  });
});

describe('what an engine may list', () => {
  it('offers at most 2,048 models of one engine, prices constructor and __proto__, drops ids with control characters', async () => {
    const engine = await new VllmEmulator({
      models: [
        { id: 'constructor', contextWindow: 4096 },
        { id: '__proto__', contextWindow: 4096 },
        { id: 'evil\u001b[2J\u001b[31mred', contextWindow: 4096 },
        ...Array.from({ length: 5_000 }, (_, i) => ({
          id: `m${String(i).padStart(5, '0')}`,
          contextWindow: 4096,
        })),
      ],
    }).start();
    r = await rig({
      engine,
      logLevel: 'warn',
      config: { pricing: { models: { constructor: { input_per_1m: 7, output_per_1m: 8 } } } },
    });
    const caps = await r.session.capabilities();
    const models = caps.models as { model_id: string; input_per_1m: number; output_per_1m: number }[];
    expect(models.length).toBe(2_048);
    const byId = new Map(models.map((m) => [m.model_id, m]));
    expect(byId.get('constructor')).toMatchObject({ input_per_1m: 7, output_per_1m: 8 });
    expect(byId.get('__proto__')).toMatchObject({ input_per_1m: 500_000, output_per_1m: 750_000 });
    expect(models.some((m) => m.model_id.includes('\u001b'))).toBe(false);
    expect(r.t.lines.some((l) => l.includes('backend listed models that are not offered'))).toBe(true);
    expect(r.t.lines.join('\n')).not.toContain('\u001b');
  });
});

describe('an engine that breaks HTTP', () => {
  /** Raw bytes an engine may answer a job with, each ending its connection in its own way. */
  const broken: Record<string, (s: Socket) => void> = {
    // Node drops a connection switched to another protocol with neither a response nor an error.
    upgrade: (s) =>
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nhi'),
    clte: (s) =>
      s.write(
        'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      ),
    cut: (s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
      s.write('1f\r\ndata: {"choices":[{"index":0}]}\r\n');
      setTimeout(() => s.destroy(), 20);
    },
    silent: (s) => s.write('HTTP/1.1 200 OK\r\n'),
    // The job began on a kept-alive connection: it must not be sent again.
    begun: (s) => {
      s.write('HTTP/1.1 200 OK\r\n');
      setTimeout(() => s.destroy(), 20);
    },
  };

  it('ends every job it breaks with job_error, sends none twice, and serves 100 jobs on one connection after', async () => {
    const posts: string[] = [];
    const engine = createServer((req, res) => {
      if (req.method === 'GET') {
        if (req.url === '/v1/models')
          return void res.end(JSON.stringify({ data: [{ id: MODEL, max_model_len: 4096 }] }));
        return void res.end(req.url === '/version' ? '{"version":"0.12.0"}' : '');
      }
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d;
      });
      req.on('end', () => {
        const mode = String(JSON.parse(body).messages[0].content);
        posts.push(mode);
        if (broken[mode]) return broken[mode](req.socket);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n${finish}data: [DONE]\n\n`);
      });
    });
    engine.keepAliveTimeout = 60_000;
    const open = new Set<Socket>();
    engine.on('connection', (s: Socket) => {
      open.add(s);
      s.on('close', () => open.delete(s));
    });
    engine.listen(0, '127.0.0.1');
    await once(engine, 'listening');
    cleanup.push(async () => {
      engine.closeAllConnections();
      await new Promise((done) => engine.close(done));
    });
    const url = `http://127.0.0.1:${(engine.address() as AddressInfo).port}`;
    r = await rig({ config: { backends: [{ kind: 'vllm', url }] } });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    cleanup.push(async () => void process.off('warning', onWarning));
    const run = (content: string, deadline_ms = 15_000) =>
      r!.session
        .dispatch({ model_id: MODEL, deadline_ms, request: { messages: [{ role: 'user', content }] } })
        .done(5_000);

    for (const mode of Object.keys(broken)) {
      // A job that went well first: the broken one goes out on its kept-alive connection.
      expect(await run('fine')).toMatchObject({ type: 'job_done' });
      const started = Date.now();
      expect(await run(mode, mode === 'silent' ? 500 : 15_000)).toMatchObject({ type: 'job_error' });
      expect(Date.now() - started).toBeLessThan(2_000);
    }
    expect(posts.filter((m) => m !== 'fine')).toEqual(Object.keys(broken));

    // `begun` reads as unreachable: the engine is probed again before it gets jobs.
    await expect
      .poll(async () => (await run('fine')).type, { timeout: 5_000, interval: 100 })
      .toBe('job_done');
    const before = open.size;
    for (let i = 0; i < 100; i++) expect(await run('fine')).toMatchObject({ type: 'job_done' });
    expect(open.size).toBeLessThanOrEqual(before);
    expect(warnings).toEqual([]);
  });
});

describe('the Anthropic translation', () => {
  it('fails a job whose engine sends one endless line, holding a bounded amount and scanning each byte once', async () => {
    r = await rig({ engine: await new VllmEmulator({ version: '0.11.0' }).start() });
    r.engine.behave({ kind: 'controlled' });
    const job = r.session.dispatch({
      model_id: MODEL,
      format: 'anthropic',
      request: { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
    });
    const s = await r.engine.controlled.waitFor();
    await s.write('data: {"id":"x","choices":[{"index":0,"delta":{"content":"');
    const piece = Buffer.alloc(64 * 1024, 'a');
    for (let i = 0; i < 24 * 16 && !s.res.destroyed; i++) await s.write(piece);
    s.end('"}}]}\n\n');
    const done = await job.done(30_000);
    expect(done).toMatchObject({ type: 'job_error', error_code: 'internal' });
    expect(job.text()).toContain('over 4194304 bytes');
  });
});

describe('local files and ports', () => {
  it('warns when the status server listens beyond loopback', async () => {
    r = await rig({ logLevel: 'warn', config: { observability: { prometheus_addr: '0.0.0.0:0' } } });
    expect(r.t.lines.some((l) => l.includes('served beyond this machine'))).toBe(true);
  });

  it('warns when the config file can be changed by others or gives away the enrollment code', async () => {
    const { loadConfig } = await import('@usepod-agent/core');
    const { chmod, mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'usepod-perm-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'agent.toml');
    await writeFile(
      file,
      '[coordinator]\nenrollment_code = "POD-ENROLL-ABCDEF12"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n',
    );
    await chmod(file, 0o644);
    expect((await loadConfig({ path: file })).warnings[0]).toMatch(/holds the enrollment code.*chmod 600/);
    await chmod(file, 0o666);
    expect((await loadConfig({ path: file })).warnings[0]).toMatch(/can be changed by group or others/);
    await chmod(file, 0o600);
    expect((await loadConfig({ path: file })).warnings).toEqual([]);
  });
});
