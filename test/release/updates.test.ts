import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestCoordinator, VllmEmulator, WebhookReceiver } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saidBy } from '../cli.js';
import type { Registry } from '../registry.js';
import { ok, PUBLIC, pack, type Ran, ROOT, sh as run, type Scratch, scratch } from './kit.js';

/**
 * Unattended updates through a real registry (issue 29): every public package packed once, published as
 * release N (0.4.0), later as N+1 (0.4.1), a broken N+2 (0.4.2: exits at start), a broken N+2′ (0.4.3:
 * fails every self-test) and N+3 (0.4.4), versions rewritten in each package.json. The operator's
 * `usepod-agent update --setup` installs N side by side; the launcher it copies runs N against the test
 * coordinator and an engine with [update] mode = "auto"; each later release is found, installed, switched
 * to and kept or rolled back by the launcher and the plugin alone. The operator's plugin made for N alone
 * comes along with N+1 in its release for N+1, in N+1's folder only.
 */
const BIN = join(ROOT, 'packages/cli/bin/run.js');
const MODEL = 'Qwen/Qwen3-14B';
const HEALTH_TIMEOUT_S = 45;
/** The operator's installed plugin: 1.0.0 declares core 0.4.0 alone, 1.1.0 core >=0.4.1. */
const ALONG = 'usepod-agent-plugin-along';

let s: Scratch;
let work: string;
let reg: Registry;
let home: string;
let env: NodeJS.ProcessEnv;
let cfg: string;
let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let hooks: WebhookReceiver;
let launcher: ChildProcess | undefined;
let launcherExited: Promise<number | null>;
let out = '';
const tarballs: string[] = [];

const sh = (cmd: string, args: string[], cwd: string, e: NodeJS.ProcessEnv = env): Promise<Ran> =>
  run(cmd, args, { cwd, env: e });

/** The CLI of a version in the side-by-side folder (`current`, `versions/0.4.0`), as the operator runs it. */
const cliOf = (where: string) => join(dir, where, 'node_modules', 'usepod-agent', 'bin', 'run.js');

/** A small plugin with no backend kind that says in the log which release of it was applied. */
async function publishPlugin(version: string, core: string): Promise<void> {
  const pkgDir = join(work, 'plugins', `${ALONG}-${version}`);
  await mkdir(pkgDir, { recursive: true });
  await writeFile(
    join(pkgDir, 'package.json'),
    JSON.stringify({
      name: ALONG,
      version,
      type: 'module',
      main: 'index.js',
      peerDependencies: { '@usepod-agent/core': core },
      'usepod-agent': { kinds: [] },
      // What makes it installable with `plugins install` (docs/plugins.md).
      oclif: {},
    }),
  );
  await writeFile(
    join(pkgDir, 'index.js'),
    `export default { name: '${ALONG}', apiVersion: 1, apply(_hooks, ctx) { ctx.log.info('plugin along ${version} applied'); } };\n`,
  );
  await ok(sh('npm', ['publish', pkgDir], work, reg.npmEnv), `npm publish ${ALONG}@${version}`);
}

/**
 * Publishes every package as `version`: each tarball unpacked, its version and its exact dependencies on
 * the others rewritten, scripts dropped (it is built already), `patch` applied, then `npm publish`.
 */
async function release(
  version: string,
  patch?: (name: string, pkgDir: string) => Promise<void>,
): Promise<void> {
  for (const tgz of tarballs) {
    const into = join(
      work,
      'releases',
      version,
      tgz
        .replace(/\.tgz$/, '')
        .split('/')
        .at(-1)!,
    );
    await mkdir(into, { recursive: true });
    await ok(sh('tar', ['-xzf', tgz, '-C', into], work), `tar ${tgz}`);
    const pkgDir = join(into, 'package');
    const file = join(pkgDir, 'package.json');
    const pkg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    pkg.version = version;
    delete pkg.scripts;
    for (const field of ['dependencies', 'devDependencies']) {
      const deps = pkg[field] as Record<string, string> | undefined;
      for (const name of Object.keys(deps ?? {}))
        if ((name.startsWith('@usepod-agent/') || name === 'usepod-agent') && deps![name] === '0.4.0')
          deps![name] = version;
    }
    await writeFile(file, `${JSON.stringify(pkg, null, 2)}\n`);
    await patch?.(pkg.name as string, pkgDir);
    await ok(sh('npm', ['publish', pkgDir], work, reg.npmEnv), `npm publish ${String(pkg.name)}@${version}`);
  }
}

/** Resolves when the launcher or its agent has printed `text` (their output is the event). */
const said = saidBy(
  () => launcher,
  () => out,
  600_000,
);

const agentVersion = (s: { authResponse: Record<string, unknown> | undefined }) =>
  (s.authResponse?.metadata as { agent_version?: string } | undefined)?.agent_version ??
  (s.authResponse?.agent_version as string | undefined);

beforeAll(async () => {
  s = await scratch('usepod-updates-');
  ({ work, reg, home } = s);
  // The machine running the tests may be a container; the operator's here is not.
  env = s.operatorEnv({ NODE_ENV: 'production', USEPOD_CONTAINER: '0' });
  const packed = join(work, 'tarballs');
  await mkdir(packed);
  for (const p of PUBLIC) tarballs.push(await pack(p, packed, reg.npmEnv));
  await release('0.4.0');
  coordinator = await TestCoordinator.start();
  engine = await new VllmEmulator().start();
  hooks = await new WebhookReceiver().start();
  cfg = join(home, 'agent.toml');
  await writeFile(
    cfg,
    `[coordinator]
url = "${coordinator.url}"
[identity]
key_path = "${join(home, 'id', 'identity.key')}"
[[backends]]
kind = "vllm"
url = "${engine.url}"
[limits]
drain_timeout_s = 600
[observability]
prometheus_addr = "off"
[update]
mode = "auto"
registry = "${reg.url}"
check_interval = "3s"
min_age = 0
spread = 0
health_timeout = "${HEALTH_TIMEOUT_S}s"
[[alerts]]
url = "${hooks.url('/hook')}"
format = "json"
events = ["notice"]
`,
  );
  dir = join(home, 'id', 'update');
}, 600_000);

afterAll(async () => {
  launcher?.kill('SIGTERM');
  if (launcher) await Promise.race([launcherExited, new Promise((r) => setTimeout(r, 30_000))]);
  launcher?.kill('SIGKILL');
  await coordinator?.close();
  await engine?.close();
  await hooks?.close();
  await s?.close();
});

describe('unattended updates through a real registry', () => {
  it('`update --setup` installs release N side by side, and the launcher runs it; the operator installs a plugin made for N', async () => {
    const setup = await ok(
      sh(process.execPath, [BIN, 'update', '--setup', '--config', cfg], home),
      'update --setup',
    );
    expect(setup.stdout).toContain(`${dir}/launcher.mjs --dir ${dir} -- run`);
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '0.4.0'));
    launcher = spawn(
      process.execPath,
      [join(dir, 'launcher.mjs'), '--dir', dir, '--', 'run', '--config', cfg, '--allow-insecure'],
      { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    launcher.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    launcher.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    launcherExited = new Promise((r) => launcher!.on('exit', (code) => r(code)));
    const session = await coordinator.firstAuthenticated(120_000);
    expect(agentVersion(session)).toBe('0.4.0');
    await session.capabilities();
    // The operator's plugin declares core 0.4.0 alone; its author has published a release for 0.4.1 on.
    await publishPlugin('1.0.0', '0.4.0');
    await publishPlugin('1.1.0', '>=0.4.1');
    await ok(
      sh(process.execPath, [cliOf('current'), 'plugins', 'install', `${ALONG}@1.0.0`], home),
      'plugins install',
    );
    const listed = await ok(sh(process.execPath, [cliOf('current'), 'plugins'], home), 'plugins (0.4.0)');
    expect(listed.stdout).toMatch(new RegExp(`^${ALONG}\\s+1\\.0\\.0 `, 'm'));
  }, 900_000);

  it('N+1 is found and installed while a long job is in flight; the job finishes byte-exact; N+1 proves itself and is kept', async () => {
    const first = coordinator.sessions.items[0]!;
    engine.behave({ kind: 'controlled' });
    const job = first.dispatch({
      model_id: MODEL,
      request: { messages: [{ role: 'user', content: 'long' }], max_tokens: 64 },
      // Longer than the install of N+1 takes (npm builds better-sqlite3 from source here).
      deadline_ms: 1_200_000,
    });
    const stream = await engine.controlled.waitFor(() => true, 30_000);
    await stream.write('data: {"choices":[{"index":0,"delta":{"content":"one"}}]}\n\n');
    await job.firstChunk();
    const from = out.length;
    await release('0.4.1');
    // The plugin made for 0.4.0 alone comes along in its release for 0.4.1.
    await said(`installing usepod-agent 0.4.1 beside 0.4.0 with ${ALONG} 1.1.0`, from);
    // Installed, it holds the agent (no new jobs) and waits for the job in flight.
    const held = await first.frames.waitFor(
      (f: Record<string, unknown>) =>
        f.type === 'capabilities' && Array.isArray(f.models) && f.models.length === 0,
      900_000,
      'the drain hold',
    );
    expect(held).toBeDefined();
    expect(job.terminal).toBeUndefined();
    await stream.write('data: {"choices":[{"index":0,"delta":{"content":" two"}}]}\n\n');
    stream.end('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    expect((await job.done(60_000)).type).toBe('job_done');
    expect(job.body().equals(Buffer.concat(stream.record.sent))).toBe(true);
    await said('switched to 0.4.1 (from 0.4.0)', from);
    const next = await coordinator.nextAuthenticated(120_000);
    expect(agentVersion(next)).toBe('0.4.1');
    await said('0.4.1 is healthy: kept', from);
    expect(await readlink(join(dir, 'current'))).toBe(join('versions', '0.4.1'));
    expect(await readlink(join(dir, 'previous'))).toBe(join('versions', '0.4.0'));
    expect(new Set(coordinator.sessions.items.map((s) => s.providerId).filter(Boolean)).size).toBe(1);
    expect((await next.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    // The agent on N+1 runs the plugin's release for N+1, from N+1's folder; N keeps the operator's copy,
    // so going back to N gives the old pair.
    await said('plugin along 1.1.0 applied', from);
    expect(out.slice(from)).not.toContain('plugin along 1.0.0 applied');
    const listed = await ok(sh(process.execPath, [cliOf('current'), 'plugins'], home), 'plugins (0.4.1)');
    expect(listed.stdout).toMatch(new RegExp(`^${ALONG}\\s+1\\.1\\.0 `, 'm'));
    const before = await ok(sh(process.execPath, [cliOf('previous'), 'plugins'], home), 'plugins (0.4.0)');
    expect(before.stdout).toMatch(new RegExp(`^${ALONG}\\s+1\\.0\\.0 `, 'm'));
  }, 1_200_000);

  it('N+2 exits at start: back on N+1 within health_timeout + 1 min, N+2 bad and not installed again, update_failed sent', async () => {
    const from = out.length;
    await release('0.4.2', async (name, pkgDir) => {
      if (name !== 'usepod-agent') return;
      const bin = join(pkgDir, 'bin', 'run.js');
      await writeFile(bin, (await readFile(bin, 'utf8')).replace(/^(#!.*\n)/, '$1process.exit(3);\n'));
    });
    await said('switched to 0.4.2 (from 0.4.1)', from);
    const switchedAt = Date.now();
    await said('rolled back to 0.4.1: 0.4.2 exited with code 3 before it was healthy', from);
    const rolled = out.lastIndexOf('rolled back to 0.4.1');
    const back = await coordinator.nextAuthenticated(120_000);
    expect(agentVersion(back)).toBe('0.4.1');
    // Back on 0.4.1 with the plugin release it was kept with.
    await said('plugin along 1.1.0 applied', rolled);
    expect(Date.now() - switchedAt).toBeLessThan((HEALTH_TIMEOUT_S + 60) * 1000);
    expect((await back.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    const posts = await hooks.wait(1, 60_000);
    expect(posts.map((p) => JSON.stringify(p.body)).join('\n')).toMatch(
      /update_failed[\s\S]*0\.4\.2|0\.4\.2[\s\S]*update_failed/,
    );
    // The next checks see 0.4.2 and leave it: never installed again, and its folder is gone.
    const checked = Date.now();
    for (;;) {
      const state = JSON.parse(await readFile(join(dir, 'update-state.json'), 'utf8')) as {
        checkedAt?: string;
        latest?: { version: string };
      };
      if (state.checkedAt && Date.parse(state.checkedAt) > checked + 3000) {
        expect(state.latest?.version).toBe('0.4.2');
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(out.slice(from)).not.toMatch(
      /installing usepod-agent 0\.4\.2[\s\S]*installing usepod-agent 0\.4\.2/,
    );
    expect(existsSync(join(dir, 'versions', '0.4.2'))).toBe(false);
    const view = await ok(
      sh(process.execPath, [BIN, 'update', '--json', '--config', cfg], home),
      'update --json',
    );
    const v = JSON.parse(view.stdout) as { bad: { version: string; reason: string }[]; current: string };
    expect(v.current).toBe('0.4.1');
    expect(v.bad).toEqual([
      expect.objectContaining({ version: '0.4.2', reason: 'exited with code 3 before it was healthy' }),
    ]);
  }, 1_200_000);

  it('N+2′ starts but fails every self-test: back on N+1, N+2′ bad, update_failed sent', async () => {
    const from = out.length;
    const told = hooks.got.length;
    // Its engine requests go to a path vLLM does not serve: discovery works, every completion fails.
    await release('0.4.3', async (name, pkgDir) => {
      if (name !== '@usepod-agent/core') return;
      const file = join(pkgDir, 'dist', 'backend', 'openai-compatible.js');
      const js = await readFile(file, 'utf8');
      expect(js).toContain('/chat/completions');
      await writeFile(file, js.replaceAll('/chat/completions', '/chat/nowhere'));
    });
    await said('switched to 0.4.3 (from 0.4.1)', from);
    const switchedAt = Date.now();
    await said(`rolled back to 0.4.1: 0.4.3 failed its self-test of ${MODEL}`, from);
    const back = await coordinator.nextAuthenticated(120_000);
    expect(agentVersion(back)).toBe('0.4.1');
    expect(Date.now() - switchedAt).toBeLessThan((HEALTH_TIMEOUT_S + 60) * 1000);
    expect((await back.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
    const posts = await hooks.wait(told + 1, 60_000);
    expect(
      posts
        .slice(told)
        .map((p) => JSON.stringify(p.body))
        .join('\n'),
    ).toMatch(/update_failed/);
    expect(JSON.stringify(posts.slice(told).map((p) => p.body))).toContain('0.4.3');
  }, 1_200_000);

  it('a linked plugin whose core range excludes N+3 holds the update back, in one line naming it', async () => {
    const plugin = join(work, 'pinned');
    await mkdir(plugin, { recursive: true });
    await writeFile(
      join(plugin, 'package.json'),
      JSON.stringify({
        name: 'usepod-agent-plugin-pinned',
        version: '1.0.0',
        type: 'module',
        main: 'index.js',
        peerDependencies: { '@usepod-agent/core': '>=0.4.0 <0.4.4' },
        'usepod-agent': { kinds: [] },
      }),
    );
    await writeFile(
      join(plugin, 'index.js'),
      "export default { name: 'usepod-agent-plugin-pinned', apiVersion: 1, apply() {} };\n",
    );
    // What `usepod-agent plugins link` records, beside the plugin `plugins install` recorded.
    const manifestFile = join(home, 'data', 'usepod-agent', 'package.json');
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { oclif: { plugins: unknown[] } };
    manifest.oclif.plugins.push({ type: 'link', name: 'usepod-agent-plugin-pinned', root: plugin });
    await writeFile(manifestFile, JSON.stringify(manifest));
    const from = out.length;
    await release('0.4.4');
    await said(
      'update to 0.4.4 held back: plugin usepod-agent-plugin-pinned requires @usepod-agent/core >=0.4.0 <0.4.4',
      from,
    );
    expect(out.slice(from)).not.toContain('installing usepod-agent 0.4.4');
    expect(existsSync(join(dir, 'versions', '0.4.4'))).toBe(false);
    // The operator asking for it now hears the same line, and nothing is installed.
    const now = await sh(process.execPath, [BIN, 'update', '--now', '--config', cfg], home);
    expect(now.code).toBe(1);
    expect(now.stderr).toContain(
      'update to 0.4.4 held back: plugin usepod-agent-plugin-pinned requires @usepod-agent/core >=0.4.0 <0.4.4',
    );
    expect(existsSync(join(dir, 'versions', '0.4.4'))).toBe(false);
    const shown = await ok(sh(process.execPath, [BIN, 'update', '--config', cfg], home), 'update');
    expect(shown.stdout).toMatch(/^held {6}update to 0\.4\.4 held back: plugin usepod-agent-plugin-pinned/m);
    // The installed plugin would have come along in its release for 0.4.4: said, and in --json.
    expect(shown.stdout).toContain(`plugin    ${ALONG} 1.0.0 -> 1.1.0 comes along with 0.4.4`);
    const json = await ok(
      sh(process.execPath, [BIN, 'update', '--json', '--config', cfg], home),
      'update --json',
    );
    expect((JSON.parse(json.stdout) as { plugins: unknown }).plugins).toEqual([
      { name: ALONG, from: '1.0.0', version: '1.1.0' },
    ]);
  }, 600_000);
});
