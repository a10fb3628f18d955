import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestAgent, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { DEFAULT_PROMETHEUS_ADDR } from '../packages/core/src/config/schema.js';
import { validateConfig } from '../packages/core/src/config/validate.js';
import { type Rig, rig } from './helpers.js';

const BIN = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));
let r: Rig | undefined;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('secrets never reach output', () => {
  it('greps every line of a full debug run, the status endpoint and --json output for each secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-sec-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const ENROLL = 'POD-ENROLL-Q7W8E9R0';
    const API_KEY = 'sk-vllm-5f4dcc3b5aa765d61d8327deb882cf99';
    const coordinator = await TestCoordinator.start({ enrollmentCode: ENROLL });
    const engine = await new VllmEmulator({ apiKey: API_KEY }).start();
    cleanup.push(async () => {
      await engine.close();
      await coordinator.close();
    });
    const keyPath = join(dir, 'identity.key');
    const cfg = join(dir, 'agent.toml');
    const probe = createHttpServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    probe.close();
    await writeFile(
      cfg,
      [
        '[coordinator]',
        `url = "${coordinator.url}"`,
        `enrollment_code = "${ENROLL}"`,
        '[identity]',
        `key_path = "${keyPath}"`,
        '[[backends]]',
        'kind = "vllm"',
        `url = "${engine.url}"`,
        'api_key_env = "VLLM_API_KEY"',
        '[observability]',
        `prometheus_addr = "127.0.0.1:${port}"`,
      ].join('\n'),
    );
    const env = {
      PATH: process.env.PATH,
      HOME: dir,
      XDG_DATA_HOME: join(dir, 'data'),
      VLLM_API_KEY: API_KEY,
      DEBUG: 'usepod:*',
    };
    const child: ChildProcess = spawn(
      process.execPath,
      [BIN, 'run', '--config', cfg, '--allow-insecure', '--log-level', 'debug'],
      { env },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = once(child, 'exit');
    const session = await coordinator.firstAuthenticated(15_000);
    await session.capabilities();
    expect(session.authResponse?.enrollment_code).toBe(ENROLL); // on the wire, where it belongs
    await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    engine.apiKey = 'rotated-key-000000';
    const failed = await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(failed.error_code).toBe('auth_rejected_by_backend');
    const status = await (await fetch(`http://127.0.0.1:${port}/status`)).text();
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const cli = (args: string[]) =>
      new Promise<string>((resolve) =>
        execFile(process.execPath, [BIN, ...args], { env }, (_e, so, se) => resolve(so + se)),
      );
    const jsonOut = [
      await cli(['validate', '--config', cfg, '--allow-insecure', '--json']),
      await cli(['identity', '--config', cfg, '--json']),
      await cli(['status', '--config', cfg, '--json']),
    ].join('\n');
    child.kill('SIGTERM');
    await exited;
    const seed = /secret: (.*)/.exec(await readFile(keyPath, 'utf8'))![1]!;
    const everything = [out, status, metrics, jsonOut, JSON.stringify(failed)].join('\n');
    expect(out).toContain('job record'); // the run really logged at debug level
    expect(jsonOut).toContain('"provider_id"');
    for (const secret of [ENROLL, API_KEY, seed]) expect(everything).not.toContain(secret);
  }, 60_000);
});

describe('transport security', () => {
  it('refuses a wss:// coordinator whose certificate does not verify, even with NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
    const fixtures = new URL('./fixtures/', import.meta.url);
    const server = createHttpsServer({
      cert: readFileSync(new URL('selfsigned.crt', fixtures)),
      key: readFileSync(new URL('selfsigned.key', fixtures)),
    });
    const wss = new WebSocketServer({ server });
    let upgraded = 0;
    wss.on('connection', () => upgraded++);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(async () => {
      wss.close();
      server.closeAllConnections();
      await new Promise((res) => server.close(res));
    });
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    cleanup.push(async () => {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    });
    const t = await createTestAgent({
      config: {
        coordinator: { url: `wss://127.0.0.1:${(server.address() as AddressInfo).port}/provider/connect` },
      },
    });
    cleanup.push(() => t.close());
    // A dial that never authenticated is a `reconnect` on the stream, with why.
    const ended = once(t.agent, 'reconnect');
    await t.start();
    const [end] = await ended;
    expect(end).toMatchObject({ after: 'unexpected', preAuthFailures: 1 });
    expect(String(end.why)).toMatch(/self[- ]signed certificate/i);
    expect(upgraded).toBe(0);
  });

  it('warns about ws:// on every connect, and only ws:// is allowed by --allow-insecure', async () => {
    r = await rig({ logLevel: 'warn' });
    const next = r.t.coordinator.nextAuthenticated();
    r.session.kill();
    await (await next).capabilities();
    expect(r.t.lines.filter((l) => l.includes('coordinator connection is not encrypted')).length).toBe(2);
    expect(() => validateConfig({ coordinator: { url: 'http://x/y' } }, { allowInsecure: true })).toThrow(
      /must use wss/,
    );
  });

  it('binds the status server to loopback by default', () => {
    expect(DEFAULT_PROMETHEUS_ADDR).toBe('127.0.0.1:9090');
    expect(validateConfig({}).observability.prometheus_addr).toBe('127.0.0.1:9090');
  });
});

describe('a job reaches only the configured backends', () => {
  it('ignores URLs the coordinator puts in model_id or the request', async () => {
    let canaryHits = 0;
    const canary = createHttpServer((_q, s) => {
      canaryHits++;
      s.end();
    }).listen(0, '127.0.0.1');
    await once(canary, 'listening');
    cleanup.push(() => new Promise((res) => canary.close(() => res())));
    const evil = `http://127.0.0.1:${(canary.address() as AddressInfo).port}`;
    r = await rig();
    const byModel = await r.session.dispatch({ model_id: `${evil}/v1` }).done();
    expect(byModel.error_code).toBe('model_not_loaded');
    const byBody = await r.session
      .dispatch({
        model_id: 'Qwen/Qwen3-14B',
        request: { messages: [], base_url: evil, api_base: evil, url: evil },
      })
      .done();
    expect(byBody.type).toBe('job_done');
    expect(r.engine.requests.items.filter((q) => q.path === '/v1/chat/completions')).toHaveLength(1);
    expect(canaryHits).toBe(0);
  });
});
