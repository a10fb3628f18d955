import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineEmulator } from '@usepod-agent/testkit';
import { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Registry, startRegistry } from '../registry.js';
import { AGENT_IMAGE, buildImage, ensureBaseImage, ensureTools, must, podman, RUN_FLAGS } from './podman.js';

/**
 * The image, built from this repository's Dockerfile and run here under podman (issue 20): next to an
 * engine it serves jobs; `podman stop` drains a job in flight and the container exits 0; the identity
 * outlives the container in its volume; it runs as non-root; /readyz follows the engine; HEALTHCHECK
 * answers. The coordinator and the engine emulator run on this host (the container shares its network).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENROLL = 'POD-ENROLL-CONTAINER1';
const suffix = randomBytes(4).toString('hex');
const volume = `usepod-test-${suffix}`;
const names: string[] = [];

let coordinator: TestCoordinator;
let engine: VllmEmulator;
let configDir: string;
let work: string | undefined;
let registry: Registry | undefined;
const PLUGIN_IMAGE = 'localhost/usepod-agent:test-plugins';

beforeAll(async () => {
  await ensureTools();
  await ensureBaseImage();
  const started = Date.now();
  await buildImage(ROOT);
  const size = Number(
    (await must(podman('image', 'inspect', AGENT_IMAGE, '--format', '{{.Size}}'), 'inspect')).trim(),
  );
  process.stdout.write(
    `image built in ${((Date.now() - started) / 1000).toFixed(0)} s, ${(size / 1e6).toFixed(0)} MB\n`,
  );
  await must(podman('volume', 'create', volume), 'volume create');
  await must(podman('volume', 'create', `${volume}-tgi`), 'volume create');
  // A third-party plugin baked in by name (ARG PLUGINS) from a registry of our own (ARG NPM_REGISTRY):
  // the TGI example, published to verdaccio as its author would.
  work = await mkdtemp(join(tmpdir(), 'usepod-container-reg-'));
  registry = await startRegistry(work);
  const tgi = join(work, 'tgi');
  const example = join(ROOT, 'examples/custom-backend-plugin');
  for (const f of ['package.json', 'README.md', 'dist']) {
    await cp(join(example, f), join(tgi, f), { recursive: true, filter: (p) => !p.endsWith('.tsbuildinfo') });
  }
  const pkg = JSON.parse(await readFile(join(tgi, 'package.json'), 'utf8')) as Record<string, unknown>;
  delete pkg.private;
  await writeFile(join(tgi, 'package.json'), JSON.stringify(pkg));
  await must(
    new Promise((resolve) =>
      execFile('npm', ['publish'], { cwd: tgi, env: registry!.npmEnv }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      ),
    ),
    'npm publish usepod-agent-plugin-tgi',
  );
  await buildImage(ROOT, {
    tag: PLUGIN_IMAGE,
    args: { PLUGINS: 'usepod-agent-plugin-tgi', NPM_REGISTRY: registry.url },
  });
  coordinator = await TestCoordinator.start({ enrollmentCode: ENROLL });
  engine = await new VllmEmulator().start();
  // A config file mounted over the image's, as an operator would; the environment still adds to it.
  configDir = await mkdtemp(join(tmpdir(), 'usepod-container-cfg-'));
  // The container's user must read it (mkdtemp makes 0700).
  await chmod(configDir, 0o755);
  await writeFile(
    join(configDir, 'agent.toml'),
    '[identity]\nkey_path = "/var/lib/usepod-agent/identity.key"\n[observability]\nprometheus_addr = "0.0.0.0:9090"\n[discovery]\ninterval_s = 1\n',
    { mode: 0o644 },
  );
}, 900_000);

afterAll(async () => {
  for (const n of names) await podman('rm', '-f', '-t', '0', n);
  await podman('volume', 'rm', '-f', volume);
  await podman('volume', 'rm', '-f', `${volume}-tgi`);
  registry?.close();
  if (work) await rm(work, { recursive: true, force: true });
  await engine?.close();
  await coordinator?.close();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

/** Starts the agent's container beside the engine; the status server on 9090 as the image has it. */
async function startAgent(
  env: Record<string, string>,
  mounts: string[] = [],
  opts: { image?: string; volume?: string } = {},
): Promise<string> {
  const name = `usepod-agent-test-${suffix}-${names.length}`;
  names.push(name);
  const envFlags = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  await must(
    podman(
      'run',
      '-d',
      '--name',
      name,
      ...RUN_FLAGS,
      '-v',
      `${opts.volume ?? volume}:/var/lib/usepod-agent`,
      ...mounts.flatMap((m) => ['-v', m]),
      ...envFlags,
      opts.image ?? AGENT_IMAGE,
      'run',
      '--allow-insecure',
    ),
    'podman run',
  );
  return name;
}

async function probe(path: string): Promise<number> {
  return fetch(`http://127.0.0.1:9090${path}`).then(
    (r) => r.status,
    () => 0,
  );
}

async function until(f: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const logs = async (name: string) => {
  const r = await podman('logs', name);
  return r.stdout + r.stderr;
};

describe('the container image under podman', () => {
  let first: string;

  it('enrolls from the environment, serves a job as non-root, and is healthy and ready', async () => {
    first = await startAgent(
      {
        USEPOD_COORDINATOR_URL: coordinator.url,
        USEPOD_ENROLLMENT_CODE: ENROLL,
        USEPOD_BACKEND_KIND: 'vllm',
        USEPOD_BACKEND_URL: engine.url,
      },
      [`${configDir}:/etc/usepod-agent:ro`],
    );
    const session = await coordinator.firstAuthenticated(60_000).catch(async (err) => {
      throw new Error(`${err}\n${await logs(first)}`);
    });
    expect(session.providerId).toBe('prov_1');
    expect((await session.capabilities()).models).toEqual([
      expect.objectContaining({ model_id: 'Qwen/Qwen3-14B' }),
    ]);
    expect((await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');

    const uid = await must(podman('exec', first, 'id', '-u'), 'id');
    expect(Number(uid.trim())).toBe(10001);
    const top = await must(podman('top', first, 'user', 'comm'), 'top');
    expect(top).toMatch(/usepod\s+node/);
    expect(top).not.toMatch(/root/);

    await until(async () => (await probe('/readyz')) === 200, '/readyz 200');
    expect(await probe('/healthz')).toBe(200);
    // The image's own HEALTHCHECK, run as the runtime would.
    expect((await podman('healthcheck', 'run', first)).code).toBe(0);
  }, 120_000);

  it('is not ready while its engine is down, and ready again when it is back', async () => {
    await engine.goDown();
    await until(async () => (await probe('/readyz')) === 503, '/readyz 503').catch(async (err) => {
      throw new Error(`${err}\n${await logs(first)}`);
    });
    expect(await probe('/healthz')).toBe(200);
    await engine.comeUp();
    await until(async () => (await probe('/readyz')) === 200, '/readyz 200 again', 60_000);
  }, 120_000);

  it('drains a job in flight on `podman stop` and exits 0', async () => {
    const session = coordinator.authenticated.items.at(-1)!;
    engine.behave({ kind: 'controlled' });
    const job = session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    const stream = await engine.controlled.waitFor();
    await stream.write('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n');
    const stopped = podman('stop', '-t', '60', first);
    await until(async () => /draining jobs in flight/.test(await logs(first)), 'the drain to begin');
    // Draining: not ready for new work, still alive.
    expect(await probe('/readyz')).toBe(503);
    stream.end(
      'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\ndata: [DONE]\n\n',
    );
    expect((await job.done()).type).toBe('job_done');
    expect((await stopped).code).toBe(0);
    const state = await must(
      podman('inspect', first, '--format', '{{.State.ExitCode}} {{.State.Status}}'),
      'inspect',
    );
    expect(state.trim()).toBe('0 exited');
  }, 120_000);

  it('keeps its identity in the volume: a new container is the same provider, without the code', async () => {
    const before = coordinator.authenticated.items.at(-1)!.authResponse?.pubkey;
    const next = coordinator.nextAuthenticated(60_000);
    const second = await startAgent({
      USEPOD_COORDINATOR_URL: coordinator.url,
      USEPOD_BACKEND_KIND: 'vllm',
      USEPOD_BACKEND_URL: engine.url,
    });
    const session = await next.catch(async (err) => {
      throw new Error(`${err}\n${await logs(second)}`);
    });
    expect(session.authResponse?.pubkey).toBe(before);
    expect(session.providerId).toBe('prov_1');
    expect(session.authResponse?.enrollment_code ?? null).toBeNull();
    await must(podman('stop', '-t', '30', second), 'stop');
  }, 120_000);

  it('serves a job through a plugin baked in at build time (ARG PLUGINS)', async () => {
    const listed = await must(podman('run', '--rm', ...RUN_FLAGS, PLUGIN_IMAGE, 'plugins'), 'plugins');
    expect(listed).toMatch(/usepod-agent-plugin-tgi\s+0\.4\.0\s+kinds: tgi/);
    const { TgiEmulator } = (await import('../../examples/custom-backend-plugin/src/tgi-emulator.js')) as {
      TgiEmulator: new () => EngineEmulator;
    };
    const tgi = await new TgiEmulator().start();
    try {
      const next = coordinator.nextAuthenticated(60_000);
      const name = await startAgent(
        {
          USEPOD_COORDINATOR_URL: coordinator.url,
          USEPOD_ENROLLMENT_CODE: ENROLL,
          USEPOD_BACKEND_KIND: 'tgi',
          USEPOD_BACKEND_URL: tgi.url,
          USEPOD_PROMETHEUS_ADDR: 'off',
        },
        [],
        { image: PLUGIN_IMAGE, volume: `${volume}-tgi` },
      );
      const session = await next.catch(async (err) => {
        throw new Error(`${err}\n${await logs(name)}`);
      });
      expect((await session.capabilities()).models).toEqual([
        expect.objectContaining({ model_id: 'HuggingFaceH4/zephyr-7b-beta' }),
      ]);
      expect((await session.dispatch({ model_id: 'HuggingFaceH4/zephyr-7b-beta' }).done()).type).toBe(
        'job_done',
      );
      await must(podman('stop', '-t', '30', name), 'stop');
    } finally {
      await tgi.close();
    }
  }, 120_000);
});
