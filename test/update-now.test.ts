import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { control } from '@usepod-agent/plugin-control';
import { LAUNCHER_SOURCE, pointLink } from '@usepod-agent/plugin-update';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, cli, homeEnv, runAgent, type Scratch, saidBy, scratch } from './cli.js';

/**
 * `update --now` while the agent runs under the launcher (issue 29): the CLI asks the running agent over
 * its control socket (`{"cmd":"update"}`, the request `update --now` sends once the release is
 * installed); the agent's plugin-update holds, lets the job in flight finish, asks the launcher to switch
 * and exits; the launcher starts the new version, which proves itself healthy, and nobody restarts
 * anything. The versions are the CLI of this checkout linked into versions/<v> as an install would lay it
 * out; installing from a registry is the release tier's (test/release/updates.test.ts).
 */
const MODEL = 'Qwen/Qwen3-14B';
const CLI_ROOT = dirname(dirname(BIN));

let s: Scratch;
let launcher: ChildProcess | undefined;
let out = '';
let registry: Server;
let registryUrl: string;

/**
 * The channel as npm sees it: a real HTTP server on 127.0.0.1 serving usepod-agent's packument with
 * 0.4.1 as `latest` (what `npm view` reads; 0.4.1 is already in versions/, so nothing is downloaded).
 */
async function startRegistry(): Promise<void> {
  const doc = {
    name: 'usepod-agent',
    'dist-tags': { latest: '0.4.1' },
    versions: {
      '0.4.1': { name: 'usepod-agent', version: '0.4.1', dist: { tarball: 'http://127.0.0.1:9/x.tgz' } },
    },
    time: { '0.4.1': '2026-12-01T00:00:00.000Z' },
  };
  registry = createServer((req, res) => {
    if (req.url?.replace(/\/+$/, '') === '/usepod-agent') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(doc));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not found"}');
    }
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  registryUrl = `http://127.0.0.1:${(registry.address() as { port: number }).port}/`;
}

beforeEach(async () => {
  s = await scratch('usepod-update-now-');
  out = '';
  await startRegistry();
});
afterEach(async () => {
  await new Promise((r) => registry.close(r));
  if (launcher && launcher.exitCode === null) {
    const gone = new Promise((r) => launcher!.once('exit', r));
    launcher.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
    launcher.kill('SIGKILL');
  }
  launcher = undefined;
  await s.close();
});

const keyPath = () => join(s.dir, 'id', 'identity.key');
const updateDir = () => join(s.dir, 'id', 'update');
const env = () => homeEnv(s.dir, { USEPOD_CONTAINER: '0' });

async function config(): Promise<string> {
  const path = join(s.dir, 'agent.toml');
  await writeFile(
    path,
    `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${keyPath()}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n[limits]\ndrain_timeout_s = 120\n[selftest]\ninterval_s = 86400\n[observability]\nprometheus_addr = "off"\n[update]\nmode = "off"\nhealth_timeout = "60s"\nregistry = "${registryUrl}"\n`,
  );
  return path;
}

/** versions/<v> as `npm install --prefix` lays it out, holding this checkout's CLI. */
async function installed(v: string): Promise<void> {
  const modules = join(updateDir(), 'versions', v, 'node_modules');
  await mkdir(modules, { recursive: true });
  await symlink(CLI_ROOT, join(modules, 'usepod-agent'));
}

/** Resolves when the launcher or its agent has printed `text` since `from`. */
const said = saidBy(
  () => launcher,
  () => out,
  60_000,
);

async function socket(): Promise<void> {
  const sock = join(s.dir, 'id', 'agent.sock');
  for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
}

describe('update --now under the launcher', () => {
  it('drains (the job in flight finishes byte-exact), then the launcher runs the new version without anyone restarting it', async () => {
    const cfg = await config();
    await installed('0.4.0');
    await installed('0.4.1');
    await pointLink(updateDir(), 'current', '0.4.0');
    await copyFile(LAUNCHER_SOURCE, join(updateDir(), 'launcher.mjs'));
    launcher = spawn(
      process.execPath,
      [
        join(updateDir(), 'launcher.mjs'),
        '--dir',
        updateDir(),
        '--',
        'run',
        '--config',
        cfg,
        '--allow-insecure',
      ],
      { env: env(), cwd: s.dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    for (const stream of [launcher.stdout!, launcher.stderr!])
      stream.on('data', (d: Buffer) => {
        out += d.toString();
      });
    const first = await s.coordinator.nextAuthenticated(30_000);
    await first.capabilities();
    await socket();

    // A version that is not installed is refused in one line, and nothing changes.
    const missing = await control(keyPath(), { cmd: 'update', version: '0.4.9' });
    expect(missing).toMatchObject({ ok: false, error: '0.4.9 is not installed beside it' });
    // The running one is refused too.
    expect(await control(keyPath(), { cmd: 'update', version: '0.4.0' })).toMatchObject({
      ok: false,
      error: 'it already runs 0.4.0',
    });

    s.engine.behave({ kind: 'controlled' });
    const job = first.dispatch({
      model_id: MODEL,
      request: { messages: [{ role: 'user', content: 'long' }], max_tokens: 64 },
      deadline_ms: 600_000,
    });
    const stream = await s.engine.controlled.waitFor(() => true, 30_000);
    await stream.write('data: {"choices":[{"index":0,"delta":{"content":"one"}}]}\n\n');
    await job.firstChunk();

    const from = out.length;
    const now = await cli(['update', '--now', '--config', cfg], { env: env(), cwd: s.dir });
    expect(now.stderr).toBe('');
    expect(now.code).toBe(0);
    expect(now.stdout).toMatch(
      /^Installed\. The running agent drains \(jobs in flight finish within 120 s\) and exits; the launcher starts 0\.4\.1 and keeps it only if it proves itself healthy within 60 s\.$/m,
    );
    // Held: no model advertised, no new job; the one in flight goes on.
    await first.frames.waitFor(
      (f: Record<string, unknown>) =>
        f.type === 'capabilities' && Array.isArray(f.models) && f.models.length === 0,
      30_000,
      'the drain hold',
    );
    expect(job.terminal).toBeUndefined();
    expect(out.slice(from)).not.toContain('switched to 0.4.1');
    await stream.write('data: {"choices":[{"index":0,"delta":{"content":" two"}}]}\n\n');
    stream.end('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    expect((await job.done(30_000)).type).toBe('job_done');
    expect(job.body().equals(Buffer.concat(stream.record.sent))).toBe(true);

    // The agent exits by itself; the launcher switches and the new version proves itself healthy. The
    // new session is listened for before the line is: the new agent may authenticate before it is read.
    const nextSession = s.coordinator.nextAuthenticated(60_000);
    nextSession.catch(() => {}); // awaited below; not an unhandled rejection if `said` fails first
    await said('switched to 0.4.1 (from 0.4.0)', from);
    const next = await nextSession;
    expect(next.providerId).toBe(first.providerId);
    await said('0.4.1 is healthy: kept', from);
    expect(await readlink(join(updateDir(), 'current'))).toBe(join('versions', '0.4.1'));
    expect(await readlink(join(updateDir(), 'previous'))).toBe(join('versions', '0.4.0'));
    expect(launcher.exitCode).toBeNull();
    expect((await next.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');

    // `update --rollback` goes back the same way: the agent drains and exits, the launcher runs 0.4.0.
    const back = out.length;
    const rb = await cli(['update', '--rollback', '--config', cfg], { env: env(), cwd: s.dir });
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stdout).toMatch(
      /^The running agent drains \(jobs in flight finish within 120 s\) and exits; the launcher goes back to 0\.4\.0\.$/m,
    );
    const againSession = s.coordinator.nextAuthenticated(60_000);
    againSession.catch(() => {}); // awaited below; not an unhandled rejection if `said` fails first
    await said('switched to 0.4.0 (from 0.4.1)', back);
    const again = await againSession;
    expect(again.providerId).toBe(first.providerId);
    await said('0.4.0 is healthy: kept', back);
    expect(await readlink(join(updateDir(), 'current'))).toBe(join('versions', '0.4.0'));
    expect(launcher.exitCode).toBeNull();
  }, 240_000);

  it('with no agent running, or one not under the launcher, `update --now` says so in one line and keeps the switch for the next start', async () => {
    const cfg = await config();
    await installed('0.4.1');
    const alone = await cli(['update', '--now', '--config', cfg], { env: env(), cwd: s.dir });
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stdout).toMatch(
      /^Installed; not switched now: no agent runs with identity .*identity\.key \(no control socket at .*agent\.sock\)\. The launcher switches to 0\.4\.1 at the agent's next start \(`usepod-agent service restart`\), and keeps it only if it proves itself healthy\.$/m,
    );
    expect(JSON.parse(await readFile(join(updateDir(), 'switch.json'), 'utf8'))).toMatchObject({
      version: '0.4.1',
    });
    const a = await runAgent(cfg, {
      env: env(),
      cwd: s.dir,
      coordinator: s.coordinator,
      children: s.children,
      keyDir: join(s.dir, 'id'),
    });
    const reply = await cli(['update', '--now', '--config', cfg], { env: env(), cwd: s.dir });
    expect(reply.code, reply.stderr).toBe(0);
    expect(reply.stdout).toMatch(
      /^Installed; not switched now: the running agent says it does not run under the launcher \(only the launcher can switch versions\)\. The launcher switches to 0\.4\.1 at the agent's next start/m,
    );
    expect((await a.session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    expect(a.child.exitCode).toBeNull();
  }, 60_000);
});
