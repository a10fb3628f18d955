import { once } from 'node:events';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { AgentPlugin } from '@usepod-agent/core';
import ledgerPlugin from '@usepod-agent/plugin-ledger';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { afterEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { render } from '../packages/cli/src/commands/status.js';
import { cli, homeEnv } from './cli.js';
import { hello, type Rig, rig } from './helpers.js';

/**
 * The owner's surfaces as attackers see them (issue 28, point 9): another local user, a browser page, a
 * broken engine or plugin, a hostile environment. Each test attacks a real process, socket or file and
 * failed before the fix named in its row.
 *
 * | attack                                                            | surface          | before                                        | now                                                   |
 * | ----------------------------------------------------------------- | ---------------- | --------------------------------------------- | ----------------------------------------------------- |
 * | `.usepodrc.cjs` planted by another user in the cwd                | config lookup    | executed (twice) by any command run there     | refused unread: USEPOD_CONFIG_UNSAFE, names the file  |
 * | `agent.toml` in a world-writable (not sticky) cwd                 | config lookup    | read: anyone could name the coordinator       | refused unread: USEPOD_CONFIG_UNSAFE                  |
 * | `./node_modules/usepod-agent-plugin-x` (default) of another user  | plugin lookup    | imported (code ran) by run, validate, doctor  | a cwd node_modules others could have made is skipped  |
 * | a plugin status section: cycle, BigInt, 8 MB, throwing            | /status          | cycle and BigInt threw in the request handler | each section an `{error}`; the rest of /status served |
 * | a hold reason with ESC, BEL, CR LF                                | /readyz, /status | raw on the probe's terminal                   | folded where placed (holds.ts; main did the same)     |
 * | a page on attacker.example rebinding to 127.0.0.1                 | status server    | /status and /metrics read by the page         | 421 unless Host is an IP or localhost (on loopback)   |
 * | a socket sending headers and never ending them (slowloris)        | status server    | held 60 s+ (Node's defaults)                  | closed after 5-10 s                                   |
 * | a fake /status (ESC in every string) on the agent's port          | `status` command | coordinator, ids, labels, detail printed raw  | every string folded before it is rendered             |
 * | USEPOD_* = 1e400, NaN, -5, 400 nines, Infinity, 0x10, ESC         | env config       | one line at $VAR (already held)               | same; kept as a regression                            |
 * | USEPOD_BACKEND_URL of 100 KB                                      | env config       | the whole value echoed in the error (100 KB)  | quoted to 80 characters                               |
 * | engine fails two on-demand self-tests (interval_s 0), recovers    | self-tests       | model withdrawn for good: nothing retested it | retested every eject_cooldown_s while withdrawn       |
 * | self-test answers: ESC + 100 KB error, hang, 3 MB line, usage 1e8 | self-tests       | bounded and folded (already held)             | same; kept as a regression                            |
 * | coordinator accepting TCP, silent at TLS                          | doctor           | TLS fails after 5 s, exits 1 (already held)   | same; kept as a regression                            |
 * | TLS certificate CN with ESC/BEL (trusted re-signing proxy)        | doctor           | printed raw in the TLS line                   | every check's name, detail and fix folded             |
 * | a plugin's doctor finding with ESC/BEL/CR                         | doctor           | printed raw                                   | folded like the core's lines (`folded`, from main)    |
 * | pod restarts on a volume with fsGroup (policy Always)             | Kubernetes       | kubelet made identity.key 0660 at each mount  | fsGroupChangePolicy OnRootMismatch: set once          |
 * | NPM_REGISTRY=https://user:token@registry as a build argument      | Dockerfile       | the token shipped in the image history        | refused; credentials via --secret id=npmrc            |
 * | quiet hours `daily 00:00-24:00` in Pacific/Chatham, then resume   | quiet hours      | held; resume ends it (already held)           | same; kept as a regression                            |
 * | holds until 8.64e15 ms and 99 years (past 2^31-1 ms)              | holds            | stay until then (already held: longTimeout)   | same; kept as a regression                            |
 */
let r: Rig | undefined;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await r?.close();
  r = undefined;
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function scratch(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The control characters (C0, DEL, C1) in a text a terminal would show. */
const controls = (text: string) =>
  [...text].filter((c) => {
    const n = c.charCodeAt(0);
    return n < 0x20 || (n >= 0x7f && n <= 0x9f);
  });

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe('a config file another local user planted in the current folder', () => {
  const NOBODY = 65534;
  const canChown = process.getuid?.() === 0;

  it.runIf(canChown)('a .usepodrc.cjs owned by another user is never executed', async () => {
    const home = await scratch('usepod-home-');
    const shared = await scratch('usepod-shared-');
    await chmod(shared, 0o1777);
    const marker = join(shared, 'pwned');
    const planted = join(shared, '.usepodrc.cjs');
    await writeFile(
      planted,
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); module.exports = {};\n`,
    );
    await chown(planted, NOBODY, NOBODY);
    const r = await cli(['validate'], { cwd: shared, env: homeEnv(home) });
    expect(await exists(marker)).toBe(false);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('USEPOD_CONFIG_UNSAFE');
    expect(r.stderr).toContain(planted);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("an agent.toml in a folder anyone may write (not sticky) is refused; one in the owner's folder is read", async () => {
    const home = await scratch('usepod-home-');
    const open = await scratch('usepod-open-');
    await chmod(open, 0o777);
    const toml =
      'backends = [{ kind = "vllm", url = "http://127.0.0.1:1" }]\n[coordinator]\nurl = "wss://evil.example"\n';
    await writeFile(join(open, 'agent.toml'), toml);
    const r = await cli(['validate'], { cwd: open, env: homeEnv(home) });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('USEPOD_CONFIG_UNSAFE');
    const mine = await scratch('usepod-mine-');
    await writeFile(join(mine, 'agent.toml'), toml);
    const ok = await cli(['validate'], { cwd: mine, env: homeEnv(home) });
    expect(ok.stderr).not.toContain('USEPOD_CONFIG_UNSAFE');
    expect(`${ok.stdout}${ok.stderr}`).toContain(join(mine, 'agent.toml'));
  });
});

/** A plugin whose status sections are what a buggy plugin returns. */
function sectionsPlugin(sections: Record<string, () => unknown>): AgentPlugin {
  return {
    name: 'redteam:sections',
    apiVersion: 1,
    apply: (_hooks, ctx) => {
      for (const [name, read] of Object.entries(sections)) ctx.statusSection(name, read);
    },
  };
}

/** A raw HTTP/1.1 exchange, so the Host header is the attacker's. */
async function raw(request: string): Promise<string> {
  const a = r!.t.agent.statusAddress!;
  const socket = connect(a.port, a.host);
  await once(socket, 'connect');
  socket.end(request);
  let out = '';
  for await (const chunk of socket) out += chunk;
  return out;
}

describe('a plugin another local user planted in node_modules of the current folder', () => {
  it.runIf(process.getuid?.() === 0)(
    'is never imported, even one declaring itself applied by default',
    async () => {
      const home = await scratch('usepod-home-');
      const shared = await scratch('usepod-shared-');
      await chmod(shared, 0o1777);
      const marker = join(shared, 'pwned');
      const pkg = join(shared, 'node_modules', 'usepod-agent-plugin-evil');
      await mkdir(pkg, { recursive: true });
      await writeFile(
        join(pkg, 'package.json'),
        JSON.stringify({
          name: 'usepod-agent-plugin-evil',
          version: '1.0.0',
          main: 'index.js',
          'usepod-agent': { default: true },
        }),
      );
      await writeFile(
        join(pkg, 'index.js'),
        `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); module.exports = { name: 'evil', apiVersion: 1, apply() {} };\n`,
      );
      for (const p of [join(shared, 'node_modules'), pkg, join(pkg, 'package.json'), join(pkg, 'index.js')])
        await chown(p, 65534, 65534);
      const cfg = join(home, 'agent.toml');
      await writeFile(
        cfg,
        `[identity]\nkey_path = "${join(home, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:1"\n`,
        { mode: 0o600 },
      );
      const out = await cli(['validate', '--config', cfg], { cwd: shared, env: homeEnv(home) });
      expect(await exists(marker)).toBe(false);
      expect(out.stderr).not.toMatch(/\n\s+at /);
    },
  );
});

describe('the status server (/status, /readyz, /metrics) against a local user and a browser page', () => {
  const statusRig = (plugins: AgentPlugin[] = []) =>
    rig({
      config: { observability: { prometheus_addr: '127.0.0.1:0' } },
      plugins: [vllmPlugin, ...plugins],
    });

  it('a plugin section that is a cycle, a BigInt, huge or throws leaves /status answering, each shown as an error', async () => {
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    r = await statusRig([
      sectionsPlugin({
        cycle: () => cycle,
        big: () => ({ n: 10n }),
        huge: () => ({ text: 'x'.repeat(8 * 1024 * 1024) }),
        throws: () => {
          throw new Error('boom');
        },
        fine: () => ({ ok: true }),
      }),
    ]);
    const a = r.t.agent.statusAddress!;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://${a.host}:${a.port}/status`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text.length).toBeLessThan(256 * 1024);
      const body = JSON.parse(text) as { sections: Record<string, unknown> };
      expect(body.sections.fine).toEqual({ ok: true });
      for (const bad of ['cycle', 'big', 'huge', 'throws'])
        expect(body.sections[bad]).toEqual({ error: expect.any(String) });
    }
    expect((await fetch(`http://${a.host}:${a.port}/healthz`)).status).toBe(200);
  });

  it('`status` says when the ledger cannot be written, and how many records wait', async () => {
    const dir = await scratch('usepod-ledger-status-');
    // The ledger's path is a folder: SQLite cannot open it, as on a full or read-only disk.
    const file = join(dir, 'taken');
    await mkdir(file);
    r = await rig({ config: { ledger: { path: file } }, plugins: [vllmPlugin, ledgerPlugin] });
    expect((await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B', request: hello }).done()).type).toBe(
      'job_done',
    );
    await expect
      .poll(() => (r!.t.agent.status().sections.ledger as { failing?: string }).failing)
      .toBeTruthy();
    const shown = render(r.t.agent.status(), 'here');
    expect(shown).toMatch(
      /^ {2}LEDGER {8}cannot be written: .+; 1 record\(s\) wait to be written \(jobs are served; see the log\)$/m,
    );
  });

  it('a hold reason with escape sequences reaches /readyz folded', async () => {
    r = await statusRig();
    r.hold('gpu', 'game \x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE\x1b[0m\r\nready');
    const a = r.t.agent.statusAddress!;
    const res = await fetch(`http://${a.host}:${a.port}/readyz`);
    expect(res.status).toBe(503);
    const body = await res.text();
    expect(controls(body.trimEnd())).toEqual([]);
    expect(body.trimEnd().split('\n')).toHaveLength(1);
    const status = (await (await fetch(`http://${a.host}:${a.port}/status`)).json()) as {
      holds: { reason: string }[];
    };
    expect(controls(status.holds[0]!.reason)).toEqual([]);
  });

  it('a page on another name (DNS rebinding) gets nothing: only IP and localhost Host headers are served', async () => {
    r = await statusRig();
    const port = r.t.agent.statusAddress!.port;
    for (const path of ['/status', '/metrics', '/readyz']) {
      const rebound = await raw(
        `GET ${path} HTTP/1.1\r\nHost: attacker.example:${port}\r\nConnection: close\r\n\r\n`,
      );
      expect(rebound).toMatch(/^HTTP\/1\.1 421 /);
      expect(rebound).not.toContain('provider_id');
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost']) {
      const ok = await raw(`GET /status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    }
  });

  it('a connection that never finishes its headers is closed, not held for a minute', async () => {
    r = await statusRig();
    const a = r.t.agent.statusAddress!;
    const socket = connect(a.port, a.host);
    await once(socket, 'connect');
    socket.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    socket.resume();
    // The test's own timeout (20 s) is the bound: Node's defaults held this socket 60 s or more.
    await once(socket, 'close');
  });
});

describe('`usepod-agent status` against a status server another local user runs on the port', () => {
  const ESC = '\x1b]0;owned\x07\x1b[2J\x1b[32mOK\x1b[0m\r';
  const hostile = {
    state: `online${ESC}`,
    connected: false,
    coordinator: `wss://x${ESC}`,
    provider_id: `p${ESC}`,
    public_key: null,
    fingerprint: `f${ESC}`,
    agent_version: `9${ESC}`,
    started_at: null,
    uptime_s: 5,
    backends: [
      {
        label: `b${ESC}`,
        kind: 'vllm',
        url: null,
        healthy: false,
        detail: `d${ESC}`,
        in_flight: 0,
        models: [],
      },
      {
        label: `u${ESC}`,
        kind: 'vllm',
        url: null,
        healthy: true,
        detail: null,
        in_flight: 0,
        models: [{ id: `m${ESC}`, context_window: `${ESC}`, selftest: null }],
      },
    ],
    models: [],
    paused: null,
    holds: [{ by: `owner${ESC}`, reason: `r${ESC}`, until: null, since: '2026-01-01T00:00:00Z' }],
    jobs: { in_flight: `0${ESC}`, served: 0, failed: 0, cancelled: 0 },
    tokens: { input: 0, output: 0 },
    relayed_bytes: 0,
    heartbeat: {
      tokens_per_sec_p50: `1${ESC}`,
      p50_latency_ms: 0,
      p95_latency_ms: 0,
      error_rate_60s: 0,
      last_error_code: `E${ESC}`,
      last_error_at: `t${ESC}`,
    },
    earnings: { micro_usdc: 0, usdc: 0 },
    sections: { [`s${ESC}`]: { [`k${ESC}`]: `v${ESC}` } },
  };

  it('prints every field folded: no escape sequence reaches the terminal', async () => {
    const home = await scratch('usepod-home-');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(hostile));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(() => new Promise((done) => server.close(() => done())));
    const { port } = server.address() as AddressInfo;
    const out = await cli(['status', '--addr', `127.0.0.1:${port}`], { cwd: home, env: homeEnv(home) });
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('PAUSED');
    expect(controls(out.stdout.replaceAll('\n', ''))).toEqual([]);
    expect(controls(out.stderr.replaceAll('\n', ''))).toEqual([]);
  });

  it('an endless body or a document of the wrong shape on that port is one coded line, never a crash or a heap', async () => {
    const home = await scratch('usepod-home-');
    let kind = 'endless';
    const server = createServer((_req, res) => {
      if (kind === 'endless') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(65_536, 0x20);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
        return;
      }
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ ...hostile, earnings: { usdc: 'x' } }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(
      () =>
        new Promise((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
    );
    const { port } = server.address() as AddressInfo;
    for (kind of ['endless', 'types']) {
      const out = await cli(['status', '--addr', `127.0.0.1:${port}`], { cwd: home, env: homeEnv(home) });
      expect(out.code, kind).toBe(1);
      expect(out.stderr, kind).toMatch(/is not a usepod-agent status \(USEPOD_AGENT_NOT_RUNNING\)/);
      expect(out.stderr, kind).not.toMatch(/\n\s+at /);
    }
  });
});

describe('USEPOD_* variables with hostile or out-of-range values', () => {
  const base = {
    USEPOD_COORDINATOR_URL: 'wss://coordinator.example',
    USEPOD_BACKEND_KIND: 'vllm',
    USEPOD_BACKEND_URL: 'http://127.0.0.1:8000',
  };
  const cases: [string, string][] = [
    ['USEPOD_MAX_CONCURRENT', '1e400'],
    ['USEPOD_MAX_CONCURRENT', 'NaN'],
    ['USEPOD_MAX_CONCURRENT', '-5'],
    ['USEPOD_MAX_CONCURRENT', '9'.repeat(400)],
    ['USEPOD_DRAIN_TIMEOUT_S', 'Infinity'],
    ['USEPOD_DRAIN_TIMEOUT_S', '0x10'],
    ['USEPOD_SELFTEST_INTERVAL_S', '86401'],
    ['USEPOD_SELFTEST_INTERVAL_S', ' 3 '.repeat(2)],
    ['USEPOD_PROMETHEUS_ADDR', '127.0.0.1:99999'],
    ['USEPOD_LOG_FORMAT', '\x1b[2Jjson'],
    ['USEPOD_BACKEND_URL', `http://x\x1b[2J${'a'.repeat(100_000)}`],
    ['USEPOD_COORDINATOR_URL', 'wss://\x1b]0;owned\x07coordinator'],
  ];
  it.each(cases.map(([n, v]) => ({ name: n, value: v, shown: JSON.stringify(v.slice(0, 24)) })))(
    '$name=$shown is one line at the variable, with a code, never a crash',
    async ({ name, value }) => {
      const home = await scratch('usepod-home-');
      const out = await cli(['validate'], { cwd: home, env: homeEnv(home, { ...base, [name]: value }) });
      expect(out.code).toBe(2);
      const lines = out.stderr.trim().split('\n');
      expect(lines.length).toBeLessThanOrEqual(2);
      expect(out.stderr).toContain(`$${name}`);
      expect(out.stderr).toMatch(/USEPOD_[A-Z_]+/);
      expect(out.stderr).not.toMatch(/\n\s+at /);
      expect(controls(out.stderr.replaceAll('\n', ''))).toEqual([]);
      expect(out.stderr.length).toBeLessThan(4096);
    },
  );
});

describe('self-tests when the engine answers as an attacker or fails for a while', () => {
  const MODEL = 'Qwen/Qwen3-14B';

  it('a model withdrawn by on-demand self-tests (interval_s 0, the default) comes back when its engine does', async () => {
    r = await rig({ config: { selftest: { withdraw_after: 2, eject_cooldown_s: 1 } } });
    r.engine.always({
      kind: 'status',
      status: 500,
      body: '{"error":{"message":"CUDA error: out of memory"}}',
    });
    const out = r.session.nextFrame('capabilities');
    await r.t.agent.selftest();
    const [failed] = await r.t.agent.selftest();
    expect(failed).toMatchObject({ ok: false, withdrawn: true });
    expect((await out).models).toEqual([]);
    // The engine recovers; nobody runs `usepod-agent selftest` again.
    const back = r.session.nextFrame('capabilities');
    r.engine.reset();
    expect(((await back).models as { model_id: string }[]).map((m) => m.model_id)).toEqual([MODEL]);
  });

  it('hostile answers (escapes, a lying usage, an endless line, a stream that never ends) are bounded and folded', async () => {
    r = await rig({ config: { selftest: { timeout_s: 2, max_tokens: 4 } } });
    const esc = '\x1b]0;owned\x07\x1b[2J';
    r.engine.behave({
      kind: 'status',
      status: 500,
      body: `{"error":{"message":"${esc.replaceAll('\x1b', '\\u001b').replaceAll('\x07', '\\u0007')}${'x'.repeat(100_000)}"}}`,
    });
    let [t] = await r.t.agent.selftest();
    expect(t!.ok).toBe(false);
    expect(controls(t!.error!)).toEqual([]);
    expect(t!.error!.length).toBeLessThanOrEqual(201);
    r.engine.behave({ kind: 'hang-after-first' });
    [t] = await r.t.agent.selftest();
    expect(t).toMatchObject({ ok: false, error: expect.stringMatching(/no answer within 2000 ms/) });
    r.engine.behave({
      kind: 'not-sse',
      body: `data: ${'y'.repeat(3 * 1024 * 1024)}`,
      contentType: 'text/event-stream',
    });
    [t] = await r.t.agent.selftest();
    expect(t!.ok).toBe(false);
    expect(t!.error!.length).toBeLessThanOrEqual(201);
    r.engine.behave({
      kind: 'not-sse',
      contentType: 'text/event-stream',
      body: 'data: {"choices":[{"index":0,"delta":{"content":"1"}}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":99999999,"total_tokens":99999999}}\n\ndata: [DONE]\n\n',
    });
    [t] = await r.t.agent.selftest();
    expect(t).toMatchObject({ ok: true });
    expect(t!.tokens).toBeLessThanOrEqual(4);
  });
});

describe('`usepod-agent doctor` against a coordinator that stalls', () => {
  it('a coordinator that accepts TCP and never answers TLS: doctor names it and exits', async () => {
    const dir = await scratch('usepod-doctor-');
    const held: Socket[] = [];
    const silent = createTcpServer((s) => held.push(s));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanup.push(async () => {
      for (const s of held) s.destroy();
      await new Promise((done) => silent.close(() => done(undefined)));
    });
    const { port } = silent.address() as AddressInfo;
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[observability]\nprometheus_addr = "off"\n[coordinator]\nurl = "wss://localhost:${port}/provider/connect"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:1"\n`,
    );
    const out = await cli(['doctor', '--config', cfg, '--json'], { cwd: dir, env: homeEnv(dir) });
    const doc = JSON.parse(out.stdout) as { checks: { name: string; level: string; detail: string }[] };
    expect(doc.checks.find((c) => c.name === 'coordinator TLS')).toMatchObject({
      level: 'fail',
      detail: expect.stringMatching(/no answer in 5 s/),
    });
    expect(out.code).toBe(1);
  }, 40_000);
});

describe('`usepod-agent doctor` and the text a coordinator chooses', () => {
  const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

  it('a certificate whose CN holds escape sequences (a re-signing proxy trusted by NODE_EXTRA_CA_CERTS) is printed folded', async () => {
    const dir = await scratch('usepod-doctor-');
    const tls = createTlsServer(
      {
        cert: await readFile(join(FIXTURES, 'escape-cn.crt')),
        key: await readFile(join(FIXTURES, 'escape-cn.key')),
      },
      (s) => s.end(),
    );
    tls.listen(0, '127.0.0.1');
    await once(tls, 'listening');
    cleanup.push(() => new Promise((done) => tls.close(() => done())));
    const { port } = tls.address() as AddressInfo;
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[observability]\nprometheus_addr = "off"\n[coordinator]\nurl = "wss://localhost:${port}/provider/connect"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:1"\n`,
    );
    const env = homeEnv(dir, { NODE_EXTRA_CA_CERTS: join(FIXTURES, 'escape-cn.crt') });
    const out = await cli(['doctor', '--config', cfg], { cwd: dir, env });
    expect(out.stdout).toMatch(/coordinator TLS/);
    expect(out.stdout).toContain('owned');
    expect(controls(out.stdout.replaceAll('\n', ''))).toEqual([]);
  }, 40_000);
});

describe('`usepod-agent doctor` and the lines plugins add', () => {
  it("a plugin's finding with escape sequences is printed folded", async () => {
    const dir = await scratch('usepod-doctor-');
    const pkg = join(dir, 'node_modules', 'usepod-agent-plugin-liar');
    await mkdir(pkg, { recursive: true });
    await writeFile(
      join(pkg, 'package.json'),
      JSON.stringify({
        name: 'usepod-agent-plugin-liar',
        version: '1.0.0',
        main: 'index.js',
        'usepod-agent': { default: true },
      }),
    );
    await writeFile(
      join(pkg, 'index.js'),
      `module.exports = { name: 'liar', apiVersion: 1, apply(_h, ctx) { ctx.doctorCheck('liar', () => [{ name: 'liar\\u001b[2J', level: 'ok', detail: '\\u001b]0;owned\\u0007\\u001b[32mOK all good\\r', fix: '\\u001b[8m' }]); } };\n`,
    );
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[observability]\nprometheus_addr = "off"\n[coordinator]\nurl = "ws://127.0.0.1:1/provider/connect"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:1"\n`,
    );
    const out = await cli(['doctor', '--config', cfg, '--allow-insecure'], { cwd: dir, env: homeEnv(dir) });
    expect(out.stdout).toContain('all good');
    expect(controls(out.stdout.replaceAll('\n', ''))).toEqual([]);
  }, 40_000);
});

describe('the container image and the Kubernetes files', () => {
  const ROOT = fileURLToPath(new URL('..', import.meta.url));

  it('the identity volume keeps the key 0600 across restarts: fsGroup changes ownership only on the first mount', async () => {
    const sts = parseYaml(await readFile(join(ROOT, 'deploy/kubernetes/base/statefulset.yaml'), 'utf8'));
    new StatefulSet(sts).validate();
    const pod = sts.spec.template.spec;
    // With the default policy (Always) the kubelet adds group read-write to every file of the volume at
    // every mount: identity.key became 0660 at the first restart.
    if (pod.securityContext?.fsGroup !== undefined) {
      expect(pod.securityContext.fsGroupChangePolicy).toBe('OnRootMismatch');
    }
  });

  it('a build argument never carries a registry credential into the image history', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    // Build arguments used by RUN are recorded in `docker history`: a token in NPM_REGISTRY would ship.
    expect(dockerfile).toMatch(/case "\$NPM_REGISTRY" in \*@\*\).*?exit 1;;/);
    // Credentials come as a BuildKit secret, mounted for the one RUN that needs them, never a layer.
    expect(dockerfile).toMatch(/RUN --mount=type=secret,id=npmrc/);
    expect(dockerfile).not.toMatch(/^(ARG|ENV)\s+\S*(TOKEN|PASSWORD|SECRET|AUTH)/im);
  });
});

describe('holds and quiet hours at their limits', () => {
  const settle = (ms: number) => new Promise((done) => setTimeout(done, ms));

  it("a window 00:00-24:00 every day in an odd zone holds, and the owner's resume ends it for good", async () => {
    r = await rig({
      config: { schedule: { pause: ['daily 00:00-24:00'], timezone: 'Pacific/Chatham' } },
      timing: { scheduleCheckMs: 10 },
    });
    expect(r.t.agent.holds().map((h) => h.by)).toEqual(['schedule']);
    r.t.agent.resume();
    // Many checks later the window the owner took back is still theirs: no pause that cannot end.
    await settle(200);
    expect(r.t.agent.holds()).toEqual([]);
    expect(r.t.agent.readiness()).toEqual({ ready: true });
  });

  it('holds ending past 2^31-1 ms (the last representable date, 99 years) stay until then, not 1 ms', async () => {
    let ctx: Parameters<AgentPlugin['apply']>[1] | undefined;
    const holder: AgentPlugin = {
      name: 'redteam:holds',
      apiVersion: 1,
      apply: (_hooks, c) => {
        ctx = c;
      },
    };
    r = await rig({ plugins: [vllmPlugin, holder] });
    ctx!.hold('gpu', { reason: 'a game', until: new Date(8.64e15) });
    r.t.agent.pause({ reason: 'away', until: new Date(Date.now() + 99 * 365 * 86_400_000) });
    await settle(100);
    expect(r.t.agent.holds().map((h) => [h.by, h.until])).toEqual([
      ['owner', expect.stringMatching(/^21\d\d-/)],
      ['gpu', '+275760-09-13T00:00:00.000Z'],
    ]);
    expect(() => r!.t.agent.pause({ until: new Date(8.64e15) })).toThrow(/100 years/);
    r.t.agent.resume();
    ctx!.release('gpu');
    expect(r.t.agent.holds()).toEqual([]);
  });
});
