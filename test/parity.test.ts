import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CoordinatorSession, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, cli, homeEnv } from './cli.js';
import { freePort } from './registry.js';

/**
 * Issue 27's parity: one agent.toml, run once by `usepod-agent run` and once by a program outside the
 * repository that calls `loadConfig()` and `createAgent({ config })` with no plugin passed by hand. What
 * the coordinator and the CLI see must be the same: the ledger's rows (`earnings`), `pause`/`resume` over
 * the control socket, yielding to a game on the GPU (a fake nvidia-smi on PATH), and `status --json`.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = ['core', 'plugin-vllm', 'plugin-ledger', 'plugin-control', 'plugin-gpu'];
const MODEL = 'Qwen/Qwen3-14B';

const PROGRAM = `import { createAgent, loadConfig } from '@usepod-agent/core';
const { config } = await loadConfig({ path: process.argv[2], allowInsecure: true });
const agent = createAgent({ config, allowInsecure: true });
await agent.start();
process.once('SIGTERM', () => agent.stop().then(() => process.exit(0)));
`;

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A fake nvidia-smi playing `engine` (only vLLM on the GPU) or `game` (a game beside it). */
async function fakeNvidiaSmi(dir: string): Promise<(state: 'engine' | 'game') => Promise<void>> {
  const tools = join(dir, 'tools');
  await mkdir(tools, { recursive: true });
  await writeFile(join(tools, 'engine.apps'), '31337, VLLM::EngineCore, 20480\n');
  await writeFile(
    join(tools, 'game.apps'),
    '31337, VLLM::EngineCore, 20480\n5678, C:\\Games\\eldenring.exe, 3000\n',
  );
  await writeFile(join(tools, 'gpu'), '85, 3500, 24576\n');
  await writeFile(
    join(tools, 'nvidia-smi'),
    `#!/bin/sh\nstate="$(cat "${tools}/state")"\ncase "$*" in\n  *query-compute-apps*) cat "${tools}/$state.apps" ;;\n  *query-gpu*) cat "${tools}/gpu" ;;\nesac\n`,
  );
  await chmod(join(tools, 'nvidia-smi'), 0o755);
  const set = (state: 'engine' | 'game') => writeFile(join(tools, 'state'), state);
  await set('engine');
  return set;
}

interface Seen {
  models: string[];
  earnings: unknown;
  pausedModels: number;
  resumedModels: number;
  gpuModels: number;
  gpuHold: unknown;
  statusSections: string[];
}

/** Runs one way (`start` spawns it), drives the same script, and returns what was seen. */
async function drive(way: 'run' | 'program'): Promise<Seen> {
  const dir = await mkdtemp(join(tmpdir(), `usepod-parity-${way}-`));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const coordinator = await TestCoordinator.start();
  cleanup.push(() => coordinator.close());
  const engine = await new VllmEmulator({ models: [{ id: MODEL, contextWindow: 32768 }] }).start();
  cleanup.push(() => engine.close());
  const setGpu = await fakeNvidiaSmi(dir);
  const port = await freePort();
  const keyDir = join(dir, 'id');
  const cfg = join(dir, 'agent.toml');
  await writeFile(
    cfg,
    [
      `[coordinator]\nurl = "${coordinator.url}"`,
      `[identity]\nkey_path = "${join(keyDir, 'identity.key')}"`,
      `[[backends]]\nkind = "vllm"\nurl = "${engine.url}"`,
      `[observability]\nprometheus_addr = "127.0.0.1:${port}"`,
      `[ledger]\npath = "${join(dir, 'ledger.db')}"`,
      `[yield]\nwhen_other_process = true\ncooldown_s = 0\npoll_s = 0.1`,
    ].join('\n'),
  );
  const env = homeEnv(dir, { PATH: `${join(dir, 'tools')}:${process.env.PATH}` });
  let child: ChildProcess;
  if (way === 'run') {
    child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], { env, cwd: dir });
  } else {
    // An integrator's project: its own folder, the packages installed in its node_modules.
    const project = join(dir, 'project');
    await mkdir(join(project, 'node_modules', '@usepod-agent'), { recursive: true });
    for (const p of PACKAGES) {
      await symlink(join(ROOT, 'packages', p), join(project, 'node_modules', '@usepod-agent', p), 'dir');
    }
    await writeFile(join(project, 'package.json'), '{ "type": "module", "private": true }\n');
    await writeFile(join(project, 'main.js'), PROGRAM);
    child = spawn(process.execPath, [join(project, 'main.js'), cfg], { env, cwd: project });
  }
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  cleanup.push(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const session: CoordinatorSession = await coordinator.firstAuthenticated(30_000).catch((err) => {
    throw new Error(`${way}: ${err}\n${stderr}`);
  });
  const models = ((await session.capabilities()).models as { model_id: string }[]).map((m) => m.model_id);
  for (let i = 0; i < 100 && !existsSync(join(keyDir, 'agent.sock')); i++)
    await new Promise((r) => setTimeout(r, 50));
  const run = (args: string[]) => cli(args, { env, cwd: dir });

  for (let i = 0; i < 3; i++)
    expect((await session.dispatch({ model_id: MODEL }).done()).type).toBe('job_done');
  // The figures that must agree; speed and busy share differ from run to run.
  const earnings = (
    JSON.parse((await run(['earnings', '--config', cfg, '--json', '--since', '1h'])).stdout) as {
      rows: Record<string, unknown>[];
    }
  ).rows.map((r) => ({
    group: r.group,
    served: r.served,
    failed: r.failed,
    missed: r.missed,
    input_tokens: r.input_tokens,
    output_tokens: r.output_tokens,
    earnings_usdc: r.earnings_usdc,
  }));

  const paused = session.nextFrame('capabilities');
  expect((await run(['pause', '--config', cfg, '--reason', 'parity'])).code).toBe(0);
  const pausedModels = ((await paused).models as unknown[]).length;
  const resumed = session.nextFrame('capabilities');
  expect((await run(['resume', '--config', cfg])).code).toBe(0);
  const resumedModels = ((await resumed).models as unknown[]).length;

  const yielded = session.nextFrame('capabilities');
  await setGpu('game');
  const gpuModels = ((await yielded).models as unknown[]).length;
  const status = JSON.parse((await run(['status', '--json', '--addr', `127.0.0.1:${port}`])).stdout) as {
    holds: { by: string; reason: string }[];
    sections: Record<string, unknown>;
  };
  const back = session.nextFrame('capabilities');
  await setGpu('engine');
  await back;

  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  return {
    models,
    earnings,
    pausedModels,
    resumedModels,
    gpuModels,
    gpuHold: status.holds.map((h) => ({ by: h.by, reason: h.reason })),
    statusSections: Object.keys(status.sections).sort(),
  };
}

describe('createAgent({ config }) is the agent `usepod-agent run` is', () => {
  it('writes the same ledger, answers pause/resume, yields to a game and shows the same status', async () => {
    const run = await drive('run');
    const program = await drive('program');
    expect(run.models).toEqual([MODEL]);
    expect(run.pausedModels).toBe(0);
    expect(run.resumedModels).toBe(1);
    expect(run.gpuModels).toBe(0);
    expect(run.gpuHold).toEqual([{ by: 'gpu', reason: 'GPU in use: eldenring.exe (pid 5678) uses a GPU' }]);
    expect(run.statusSections).toEqual(expect.arrayContaining(['ledger']));
    expect(run.earnings).toEqual([
      expect.objectContaining({ group: MODEL, served: 3, failed: 0, missed: 0 }),
    ]);
    // Whatever `run` showed, the program showed too.
    expect(program).toEqual(run);
  }, 180_000);
});
