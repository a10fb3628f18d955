import type { ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeEnv, runAgent, type Scratch, scratch } from './cli.js';

/**
 * GPU-aware yielding (issue 19) through the real CLI, with a fake `nvidia-smi` on PATH that plays
 * scripted GPU states (its output format is nvidia-smi's `--format=csv,noheader,nounits`).
 */

let dir: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let child: ChildProcess | undefined;

const STATES = {
  engine: { apps: '31337, VLLM::EngineCore, 20480', gpu: '85, 3500, 24576' },
  game: {
    apps: '31337, VLLM::EngineCore, 20480\n5678, C:\\Games\\eldenring.exe, 3000',
    gpu: '97, 500, 24576',
  },
};

let s: Scratch;
beforeEach(async () => {
  s = await scratch('usepod-yield-');
  ({ dir, coordinator, engine } = s);
  await writeFile(
    join(dir, 'nvidia-smi'),
    // "driver": what nvidia-smi says when it cannot reach the driver (a reload, a busy driver), exit 9.
    `#!/bin/sh\nstate="$(cat "${join(dir, 'state')}")"\nif [ "$state" = driver ]; then echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running." >&2; exit 9; fi\ncase "$*" in\n  *query-compute-apps*) cat "${dir}/$state.apps" ;;\n  *query-gpu*) cat "${dir}/$state.gpu" ;;\nesac\n`,
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

/** A fake `rocm-smi` (AMD) playing the same states in its `--json` shapes, in a folder of its own. */
async function fakeRocmSmi(): Promise<string> {
  const rocm = join(dir, 'rocm');
  await mkdir(rocm);
  const card = (use: number, usedGiB: number) => ({
    card0: {
      'GPU use (%)': String(use),
      'VRAM Total Memory (B)': String(24 * 2 ** 30),
      'VRAM Total Used Memory (B)': String(usedGiB * 2 ** 30),
    },
  });
  const states = {
    // vLLM's engine core as `ps -o comm=` shows it: cut at 15 characters.
    engine: {
      pids: { system: { PID31337: `VLLM::EngineCor, 1, ${20 * 2 ** 30}, 0, 85` } },
      cards: card(85, 20),
    },
    game: {
      pids: {
        system: {
          PID31337: `VLLM::EngineCor, 1, ${20 * 2 ** 30}, 0, 85`,
          PID5678: `Cyberpunk2077.e, 1, ${3 * 2 ** 30}, 0, 40`,
        },
      },
      cards: card(97, 23),
    },
  };
  for (const [name, st] of Object.entries(states)) {
    await writeFile(join(rocm, `${name}.pids`), JSON.stringify(st.pids));
    await writeFile(join(rocm, `${name}.cards`), JSON.stringify(st.cards));
  }
  await writeFile(
    join(rocm, 'rocm-smi'),
    `#!/bin/sh\nstate="$(cat "${join(dir, 'state')}")"\ncase "$*" in\n  *showpids*) cat "${rocm}/$state.pids" ;;\n  *showmeminfo*) cat "${rocm}/$state.cards" ;;\nesac\n`,
  );
  await chmod(join(rocm, 'rocm-smi'), 0o755);
  return rocm;
}

async function start(withFake: boolean | string) {
  const cfg = join(dir, 'agent.toml');
  await writeFile(
    cfg,
    `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n[yield]\nwhen_other_process = true\ncooldown_s = 0.5\npoll_s = 0.1\n`,
  );
  const fake = typeof withFake === 'string' ? withFake : withFake ? dir : undefined;
  const a = await runAgent(cfg, {
    env: homeEnv(dir, { PATH: fake ? `${fake}:${process.env.PATH}` : process.env.PATH }),
    cwd: dir,
    coordinator,
  });
  child = a.child;
  return a;
}

describe('GPU-aware yielding', () => {
  it('pauses while a game uses the GPU and resumes after the cooldown once it is gone', async () => {
    await writeFile(join(dir, 'state'), 'engine');
    const a = await start(true);
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

  it('reads rocm-smi where there is no nvidia-smi: an AMD GPU with a game on it pauses, then resumes', async () => {
    await writeFile(join(dir, 'state'), 'engine');
    const a = await start(await fakeRocmSmi());
    expect((await a.session.capabilities()).models).toHaveLength(1);
    const stepAside = a.session.nextFrame('capabilities');
    await writeFile(join(dir, 'state'), 'game');
    expect((await stepAside).models).toEqual([]);
    expect(a.stderr()).toMatch(/GPU in use: Cyberpunk2077\.e \(pid 5678\) uses a GPU/);
    const back = a.session.nextFrame('capabilities');
    await writeFile(join(dir, 'state'), 'engine');
    expect(((await back).models as unknown[]).length).toBe(1);
    expect(a.stderr()).toMatch(/GPU-aware yielding on tools=rocm-smi/);
  }, 60_000);

  it('keeps asking a tool that fails for a while (says so once), and yields once it answers', async () => {
    await writeFile(join(dir, 'state'), 'driver');
    const a = await start(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(a.stderr().match(/GPU state could not be read; trying again every poll/g)).toHaveLength(1);
    expect(a.stderr()).toContain("couldn't communicate with the NVIDIA driver");
    const stepAside = a.session.nextFrame('capabilities');
    await writeFile(join(dir, 'state'), 'game');
    expect((await stepAside).models).toEqual([]);
    expect(a.stderr()).toMatch(/GPU-aware yielding on tools=nvidia-smi/);
  }, 60_000);

  it('says once that it is unavailable without nvidia-smi, and serves', async () => {
    const a = await start(false);
    expect((await a.session.capabilities()).models).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 500));
    const lines = a.stderr().match(/GPU-aware yielding is unavailable/g) ?? [];
    expect(lines).toHaveLength(1);
    expect(a.stderr()).toContain('nvidia-smi: not found; rocm-smi: not found');
    expect((await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
  }, 60_000);
});
