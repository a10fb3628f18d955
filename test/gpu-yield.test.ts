import type { ChildProcess } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, type Scratch, scratch } from './cli.js';

/**
 * GPU-aware yielding (issue 19) through the real CLI: `[yield]` in agent.toml loads
 * @usepod-agent/plugin-gpu by its section, and a fake `nvidia-smi` on the agent's PATH plays scripted GPU
 * states (nvidia-smi's `--format=csv,noheader,nounits`). The feature's behaviour (rocm-smi, failing and
 * hanging tools, [N/A] figures, hostile names, heat, energy) is tested in-process in packages/plugin-gpu.
 */

let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let child: ChildProcess | undefined;

const STATES = {
  engine: {
    apps: '31337, VLLM::EngineCore, 20480',
    gpu: '0, 85, 3500, 24576, 250, 450, 60, NVIDIA GeForce RTX 4090',
  },
  game: {
    apps: '31337, VLLM::EngineCore, 20480\n5678, C:\\Games\\eldenring.exe, 3000',
    gpu: '0, 97, 500, 24576, 300, 450, 70, NVIDIA GeForce RTX 4090',
  },
};

let s: Scratch;
beforeEach(async () => {
  s = await scratch('usepod-yield-');
  ({ dir, coordinator, engine } = s);
  await writeFile(
    join(dir, 'nvidia-smi'),
    `#!/bin/sh\nstate="$(cat "${join(dir, 'state')}")"\ncase "$*" in\n  *query-compute-apps*) cat "${dir}/$state.apps" ;;\n  *query-gpu*) cat "${dir}/$state.gpu" ;;\nesac\n`,
  );
  await chmod(join(dir, 'nvidia-smi'), 0o755);
  for (const [name, s] of Object.entries(STATES)) {
    await writeFile(join(dir, `${name}.apps`), `${s.apps}\n`);
    await writeFile(join(dir, `${name}.gpu`), `${s.gpu}\n`);
  }
});
afterEach(async () => {
  child?.kill('SIGKILL');
  await s.close();
});

async function start() {
  const cfg = join(dir, 'agent.toml');
  await writeFile(
    cfg,
    `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n[yield]\nwhen_other_process = true\ncooldown_s = 0.5\npoll_s = 0.1\n`,
  );
  const a = await runAgent(cfg, {
    env: homeEnv(dir, { PATH: `${dir}:${process.env.PATH}` }),
    cwd: dir,
    coordinator,
  });
  child = a.child;
  return a;
}

describe('GPU-aware yielding', () => {
  it('pauses while a game uses the GPU and resumes after the cooldown once it is gone', async () => {
    await writeFile(join(dir, 'state'), 'engine');
    const a = await start();
    expect((await a.session.capabilities()).models).toHaveLength(1);
    const stepAside = a.session.nextFrame('capabilities');
    await writeFile(join(dir, 'state'), 'game');
    expect((await stepAside).models).toEqual([]);
    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      error_code: 'out_of_capacity',
      message: expect.stringContaining('GPU in use: eldenring.exe (pid 5678) uses a GPU'),
    });
    const back = a.session.nextFrame('capabilities');
    const quietFrom = Date.now();
    await writeFile(join(dir, 'state'), 'engine');
    expect(((await back).models as unknown[]).length).toBe(1);
    expect(Date.now() - quietFrom).toBeGreaterThanOrEqual(450);
    expect(a.stderr()).toMatch(
      /INFO {2}agent paused by=gpu reason="GPU in use: eldenring\.exe \(pid 5678\) uses a GPU"/,
    );
    expect(a.stderr()).toMatch(/INFO {2}agent resumed/);
  }, 60_000);
});
