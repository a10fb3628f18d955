import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ledger } from '@usepod-agent/plugin-ledger';
import { LlamacppEmulator, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli, homeEnv, runAgent } from './cli.js';

/**
 * `usepod-agent doctor` (issue 18) names the cause in each case that stops an agent earning, through the
 * real CLI against real servers: coordinator unreachable, TLS failure, authentication refused, engine
 * down, every model dropped by the allow-list, jobs refused at capacity.
 */
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-doctor-'));
  coordinator = await TestCoordinator.start();
  engine = await new VllmEmulator().start();
});
afterEach(async () => {
  await engine.close();
  await coordinator.close();
  await rm(dir, { recursive: true, force: true });
});

interface Doc {
  ok: boolean;
  checks: { name: string; level: string; detail: string; fix?: string }[];
}

async function writeConfig(toml: string, statusAddr = '127.0.0.1:0'): Promise<string> {
  const cfg = join(dir, 'agent.toml');
  await writeFile(
    cfg,
    `[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[observability]\nprometheus_addr = "${statusAddr}"\n${toml}`,
  );
  return cfg;
}

async function doctor(toml: string, statusAddr?: string): Promise<{ code: number; doc: Doc; text: string }> {
  const cfg = await writeConfig(toml, statusAddr);
  const run = (args: string[]) =>
    cli(['doctor', '--config', cfg, '--allow-insecure', ...args], { env: homeEnv(dir), cwd: dir });
  const json = await run(['--json']);
  const text = await run([]);
  return { code: json.code, doc: JSON.parse(json.stdout) as Doc, text: text.stdout };
}

const find = (d: Doc, name: string) => d.checks.find((c) => c.name.startsWith(name));
const coord = () => `[coordinator]\nurl = "${coordinator.url}"\nenrollment_code = "POD-ENROLL-DOCTOR1"\n`;
const vllm = (extra = '') => `[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n${extra}`;

describe('usepod-agent doctor', () => {
  it('says nothing stops a healthy agent, and exits 0', async () => {
    const r = await doctor(coord() + vllm());
    expect(r.doc.checks.filter((c) => c.level === 'fail')).toEqual([]);
    expect(find(r.doc, 'authenticated')).toMatchObject({ level: 'ok' });
    expect(find(r.doc, 'backend vllm')).toMatchObject({ level: 'ok' });
    expect(find(r.doc, 'backend vllm')!.detail).toContain('advertised: Qwen/Qwen3-14B');
    expect(find(r.doc, 'clock')).toMatchObject({ level: 'ok' });
    expect(r.code).toBe(0);
    expect(r.text).toMatch(/^OK {4}coordinator TCP/m);
    expect(r.text).toMatch(/Nothing stops this agent from earning\.$/m);
  }, 60_000);

  it('reports the running agent’s own connection instead of opening a second one with its key', async () => {
    const free = createNetServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const addr = `127.0.0.1:${(free.address() as AddressInfo).port}`;
    await new Promise((r) => free.close(r));
    const cfg = await writeConfig(coord() + vllm(), addr);
    const { child: agent } = await runAgent(cfg, { env: homeEnv(dir), cwd: dir, coordinator });
    try {
      const r = await doctor(coord() + vllm(), addr);
      expect(find(r.doc, 'authenticated')).toMatchObject({
        level: 'ok',
        detail: 'the running agent is online as prov_1',
      });
      // No second session was opened with the key.
      expect(coordinator.authenticated.items).toHaveLength(1);
    } finally {
      agent.kill('SIGTERM');
      await new Promise((r) => agent.on('exit', r));
    }
  }, 60_000);

  it('names an unreachable coordinator at the TCP step', async () => {
    const r = await doctor(`[coordinator]\nurl = "ws://127.0.0.1:1/provider/connect"\n${vllm()}`);
    expect(find(r.doc, 'coordinator DNS')).toMatchObject({ level: 'ok' });
    expect(find(r.doc, 'coordinator TCP')).toMatchObject({ level: 'fail' });
    expect(find(r.doc, 'coordinator TCP')!.detail).toMatch(
      /nothing answers at 127\.0\.0\.1:1: .*ECONNREFUSED/,
    );
    expect(find(r.doc, 'authenticated')).toBeUndefined();
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/Something above stops this agent from earning\.$/m);
  }, 60_000);

  it('names a TLS failure, with what to do about a re-signing proxy', async () => {
    const server = createServer({
      cert: readFileSync(join(FIXTURES, 'selfsigned.crt')),
      key: readFileSync(join(FIXTURES, 'selfsigned.key')),
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await doctor(`[coordinator]\nurl = "wss://localhost:${port}/provider/connect"\n${vllm()}`);
      expect(find(r.doc, 'coordinator TCP')).toMatchObject({ level: 'ok' });
      expect(find(r.doc, 'coordinator TLS')).toMatchObject({ level: 'fail' });
      expect(find(r.doc, 'coordinator TLS')!.detail).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
      expect(find(r.doc, 'coordinator TLS')!.fix).toContain('NODE_EXTRA_CA_CERTS');
    } finally {
      server.close();
    }
  }, 60_000);

  it('names a refused authentication with the coordinator’s reason', async () => {
    await coordinator.close();
    coordinator = await TestCoordinator.start({ enrollmentCode: 'POD-ENROLL-RIGHT' });
    const r = await doctor(
      `[coordinator]\nurl = "${coordinator.url}"\nenrollment_code = "POD-ENROLL-WRONG"\n${vllm()}`,
    );
    expect(find(r.doc, 'coordinator WebSocket')).toMatchObject({ level: 'ok' });
    expect(find(r.doc, 'authenticated')).toMatchObject({ level: 'fail' });
    expect(find(r.doc, 'authenticated')!.detail).toMatch(
      /refused this agent: unknown key: an enrollment code is required/,
    );
    expect(r.code).toBe(1);
  }, 60_000);

  it('prints a hostile refusal as one folded line: no escape, no forged OK line (issue 28)', async () => {
    await coordinator.close();
    coordinator = await TestCoordinator.start({
      authorize: () => ({
        ok: false,
        reason:
          'no\u001b]0;pwned\u0007\u001b[2J\r\nOK    authenticated  as prov_1\u009b31m\u2028OK    backend',
      }),
    });
    const r = await doctor(coord() + vllm());
    const auth = find(r.doc, 'authenticated')!;
    expect(auth.level).toBe('fail');
    expect(auth.detail).toContain('refused this agent: no');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
    expect(r.text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/);
    const lines = r.text.split('\n');
    expect(lines.filter((l) => /^\S+\s+authenticated/.test(l))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('as prov_1'))).toHaveLength(1);
    expect(lines.find((l) => l.includes('as prov_1'))).toMatch(/^FAIL {2}authenticated /);
    expect(r.code).toBe(1);
  }, 60_000);

  it('says how to name a model llama.cpp serves by its file path, as backends does (issue 28)', async () => {
    const llama = await new LlamacppEmulator().start();
    try {
      const r = await doctor(`${coord()}[[backends]]\nkind = "llamacpp"\nurl = "${llama.url}"\n`);
      expect(find(r.doc, 'model name')).toEqual({
        name: 'model name',
        level: 'warn',
        detail: '../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf is a file path, not a model name',
        fix: 'start llama-server with --alias NAME',
      });
      const listed = await cli(['backends', '--config', join(dir, 'agent.toml'), '--no-detect'], {
        env: homeEnv(dir),
        cwd: dir,
      });
      expect(listed.stdout).toContain(
        'hint: ../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf is a file path, not a model name: start llama-server with --alias NAME',
      );
    } finally {
      await llama.close();
    }
  }, 60_000);

  it('names an engine that is down', async () => {
    await engine.goDown();
    const r = await doctor(coord() + vllm());
    expect(find(r.doc, 'backend vllm')).toMatchObject({ level: 'fail' });
    expect(find(r.doc, 'backend vllm')!.detail).toMatch(/^down: /);
    expect(find(r.doc, 'backend vllm')!.fix).toMatch(/start the engine/);
    await engine.comeUp();
  }, 60_000);

  it('names every model dropped by the allow-list', async () => {
    const r = await doctor(coord() + vllm('models = ["meta-llama/Llama-3.3-70B-Instruct"]\n'));
    const b = find(r.doc, 'backend vllm')!;
    expect(b.level).toBe('fail');
    expect(b.detail).toContain('dropped by the models allow-list: Qwen/Qwen3-14B');
    expect(b.detail).toContain('allow-listed but not served: meta-llama/Llama-3.3-70B-Instruct');
    expect(r.code).toBe(1);
  }, 60_000);

  it('names jobs refused at capacity in the last 24 hours, from the ledger', async () => {
    await mkdir(join(dir, 'id'), { recursive: true });
    const ledger = Ledger.open(join(dir, 'id', 'ledger.db'));
    const at = Date.now() - 3_600_000;
    ledger.write(
      Array.from({ length: 42 }, (_, i) => ({
        jobId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        model: 'Qwen/Qwen3-14B',
        backend: undefined,
        outcome: 'error' as const,
        errorCode: 'out_of_capacity',
        inputTokens: 0,
        outputTokens: 0,
        bytes: 0,
        durationMs: 0,
        firstByteMs: undefined,
        receivedAt: at,
        format: 'openai' as const,
        inputPer1m: undefined,
        outputPer1m: undefined,
        refusal: 'max_concurrent' as const,
      })),
    );
    ledger.close();
    const r = await doctor(`${coord()}${vllm()}[limits]\nmax_concurrent = 4\n`);
    const c = find(r.doc, 'missed: capacity')!;
    expect(c.level).toBe('warn');
    expect(c.detail).toMatch(/^42 job\(s\) refused in 24 h at max_concurrent 4/);
    expect(find(r.doc, 'last job')).toMatchObject({ level: 'warn', detail: 'no job served yet' });
  }, 60_000);
});
