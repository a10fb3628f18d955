import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentEvent, ConfigInput, Logger } from '@usepod-agent/core';
import controlPlugin from '@usepod-agent/plugin-control';
import llamacpp from '@usepod-agent/plugin-llamacpp';
import vllm from '@usepod-agent/plugin-vllm';
import {
  type CoordinatorSession,
  createTestAgent,
  EventLog,
  LlamacppEmulator,
  type TestAgent,
  TestCoordinator,
  VllmEmulator,
} from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import gpuPlugin, { type GpuPlugin, type GpuPluginOptions, type JobEnergy, toolRunner } from './index.js';

/**
 * The GPU plugin in-process (issues 19, 28, 31): an agent with `plugins: [vllm, gpuPlugin()]`, a test
 * coordinator, a vLLM emulator, and fake `nvidia-smi` / `rocm-smi` in a folder of their own, passed to the
 * plugin as its PATH. The fakes print the files the test writes (nvidia-smi's `--format=csv,noheader,
 * nounits`, rocm-smi's `--json`); a `hang` file makes them ignore SIGTERM and sleep, a `driver` file fail
 * as nvidia-smi does without its driver.
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const ENGINE_APP = '31337, VLLM::EngineCore, 20480';
const GAME_APP = '5678, C:\\Games\\eldenring.exe, 3000';
const gpuLine = (o: { util?: number | string; free?: number | string; power?: number; temp?: number } = {}) =>
  `0, ${o.util ?? 85}, ${o.free ?? 3500}, 24576, ${o.power ?? 250}, 450, ${o.temp ?? 60}, NVIDIA GeForce RTX 4090`;

let dir: string;
let tools: string;
let coordinator: TestCoordinator;
let engine: VllmEmulator;
let agents: TestAgent[] = [];

/** Replaces a file the fakes read in one step (a fake never reads half a file). */
async function put(name: string, text: string): Promise<void> {
  const tmp = join(dir, `.${name}.${process.hrtime.bigint()}`);
  await writeFile(tmp, text);
  await rename(tmp, join(dir, name));
}
const drop = (name: string) => rm(join(dir, name), { force: true });

async function fakeTool(name: string, body: string): Promise<void> {
  const path = join(tools, name);
  await writeFile(
    path,
    `#!/bin/sh\nD="${dir}"\nif [ -e "$D/driver" ]; then echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2; exit 9; fi\nif [ -e "$D/hang" ]; then trap '' TERM; sleep 10 & echo $! > "$D/hung.pid"; wait; fi\n${body}`,
  );
  await chmod(path, 0o755);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-gpu-'));
  tools = join(dir, 'bin');
  await mkdir(tools);
  await fakeTool(
    'nvidia-smi',
    'case "$*" in\n  *query-compute-apps*) cat "$D/apps" ;;\n  *query-gpu*) cat "$D/gpus" ;;\nesac\n',
  );
  await put('apps', `${ENGINE_APP}\n`);
  await put('gpus', `${gpuLine()}\n`);
  coordinator = await TestCoordinator.start();
  engine = await new VllmEmulator().start();
});
afterEach(async () => {
  for (const a of agents) await a.close();
  agents = [];
  await engine.close();
  await coordinator.close();
  await rm(dir, { recursive: true, force: true });
});

/** Log lines as they come, to wait on. */
function logTo(log: EventLog<string>, area = 'agent'): Logger {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    log.push(`${level} ${area} ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}`);
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: () => {},
    child: (sub) => logTo(log, `${area}:${sub}`),
  };
}

interface Started {
  t: TestAgent;
  session: CoordinatorSession;
  log: EventLog<string>;
  events: EventLog<AgentEvent>;
  gpu: () => Record<string, unknown>;
}

async function start(
  yieldCfg: Record<string, unknown> | undefined,
  opts: {
    plugin?: GpuPluginOptions;
    instance?: GpuPlugin;
    extra?: Record<string, unknown>;
    control?: boolean;
    keyPath?: string;
    llamacpp?: boolean;
  } = {},
): Promise<Started> {
  const log = new EventLog<string>();
  const events = new EventLog<AgentEvent>();
  const t = await createTestAgent({
    coordinator,
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      ...(yieldCfg ? { yield: { cooldown_s: 0.3, poll_s: 0.1, ...yieldCfg } } : {}),
      ...(opts.keyPath ? { identity: { key_path: opts.keyPath } } : {}),
      ...opts.extra,
    } as ConfigInput,
    plugins: [
      vllm,
      opts.instance ?? gpuPlugin({ path: tools, ...opts.plugin }),
      ...(opts.control ? [controlPlugin] : []),
      ...(opts.llamacpp ? [llamacpp] : []),
    ],
    logger: logTo(log),
  });
  agents.push(t);
  t.agent.on('paused', (e) => events.push(e));
  t.agent.on('resumed', (e) => events.push(e));
  t.agent.on('notice', (e) => events.push(e));
  const next = coordinator.authenticated.next();
  const started = await t.start();
  if (!started.ok) throw started.error;
  const session = await next;
  return { t, session, log, events, gpu: () => t.agent.status().sections.gpu as Record<string, unknown> };
}

const models = (f: Record<string, unknown>) => f.models as unknown[];

/** vi.waitFor's own deadline is 1 s: a poll that starts a tool can take longer on a loaded 2-core VM. */
const SOON = { timeout: 10_000 };

/** Whether a process has ended (a zombie whose parent died has: only its entry is left). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

describe('GPU-aware yielding in-process', () => {
  it('pauses while a game uses the GPU and resumes after the cooldown once it is gone', async () => {
    const a = await start({ when_other_process: true });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    const stepAside = a.session.nextFrame('capabilities');
    await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
    expect(models(await stepAside)).toEqual([]);
    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      error_code: 'out_of_capacity',
      message: expect.stringContaining('GPU in use: eldenring.exe (pid 5678) uses a GPU'),
    });
    expect(a.gpu()).toMatchObject({
      tools: ['nvidia-smi'],
      gpus: [{ index: 0, util_pct: 85, free_mb: 3500, total_mb: 24576, power_w: 250, temp_c: 60 }],
      other_processes: [{ pid: 5678, name: 'eldenring.exe' }],
      yield: { held: true, reason: 'GPU in use: eldenring.exe (pid 5678) uses a GPU' },
    });
    expect(await a.t.agent.metricsText()).toMatch(/^usepod_agent_gpu_yield_held 1$/m);
    const back = a.session.nextFrame('capabilities');
    const quietFrom = Date.now();
    await put('apps', `${ENGINE_APP}\n`);
    expect(models(await back)).toHaveLength(1);
    expect(Date.now() - quietFrom).toBeGreaterThanOrEqual(250);
    expect(await a.t.agent.metricsText()).toMatch(/^usepod_agent_gpu_yield_held 0$/m);
    expect(a.events.items.map((e) => e.type)).toEqual(['paused', 'resumed']);
  });

  it('reads rocm-smi where there is no nvidia-smi: an AMD GPU with a game on it pauses, then resumes', async () => {
    await rm(join(tools, 'nvidia-smi'));
    await fakeTool(
      'rocm-smi',
      'case "$*" in\n  *showpids*) cat "$D/pids.json" ;;\n  *showmeminfo*) cat "$D/cards.json" ;;\nesac\n',
    );
    const pids = (game: boolean) =>
      JSON.stringify({
        system: {
          // vLLM's engine core as `ps -o comm=` shows it: cut at 15 characters.
          PID31337: `VLLM::EngineCor, 1, ${20 * 2 ** 30}, 0, 85`,
          ...(game ? { PID5678: `Cyberpunk2077.e, 1, ${3 * 2 ** 30}, 0, 40` } : {}),
        },
      });
    await put('pids.json', pids(false));
    await put(
      'cards.json',
      JSON.stringify({
        card0: {
          'GPU use (%)': '85',
          'VRAM Total Memory (B)': String(24 * 2 ** 30),
          'VRAM Total Used Memory (B)': String(20 * 2 ** 30),
          'Average Graphics Package Power (W)': '212.0',
          'Temperature (Sensor edge) (C)': '58.0',
          'Temperature (Sensor junction) (C)': '71.0',
        },
      }),
    );
    const a = await start({ when_other_process: true });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    const stepAside = a.session.nextFrame('capabilities');
    await put('pids.json', pids(true));
    expect(models(await stepAside)).toEqual([]);
    expect(a.t.agent.holds()[0]?.reason).toBe('GPU in use: Cyberpunk2077.e (pid 5678) uses a GPU');
    expect(a.gpu()).toMatchObject({
      tools: ['rocm-smi'],
      gpus: [{ tool: 'rocm-smi', index: 0, free_mb: 4096, power_w: 212, temp_c: 58 }],
    });
    const back = a.session.nextFrame('capabilities');
    await put('pids.json', pids(false));
    expect(models(await back)).toHaveLength(1);
    await a.log.waitFor((l) => l.includes('GPU-aware yielding on {"tools":"rocm-smi"}'));
  });

  it('keeps asking a tool that fails for a while (says so once), and yields once it answers', async () => {
    await put('driver', '');
    const a = await start({ when_other_process: true });
    await a.session.capabilities();
    const failing = await a.log.waitFor((l) => l.includes('GPU state could not be read'));
    expect(failing).toContain("couldn't communicate with the NVIDIA driver");
    await vi.waitFor(() => expect(a.gpu().failing).toMatch(/NVIDIA driver/), SOON);
    const stepAside = a.session.nextFrame('capabilities');
    await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
    await drop('driver');
    expect(models(await stepAside)).toEqual([]);
    expect(a.log.items.filter((l) => l.includes('GPU state could not be read'))).toHaveLength(1);
  });

  it('says once that it is unavailable without the tools, and serves', async () => {
    const a = await start({ when_other_process: true }, { plugin: { path: join(dir, 'nowhere') } });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    const line = await a.log.waitFor((l) => l.includes('GPU-aware yielding is unavailable'));
    expect(line).toContain('nvidia-smi: not found; rocm-smi: not found');
    expect((await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
    expect(a.gpu()).toMatchObject({ tools: [], unavailable: 'nvidia-smi: not found; rocm-smi: not found' });
    expect(a.log.items.filter((l) => l.includes('unavailable'))).toHaveLength(1);
  });

  it('runs no GPU tool without [yield] or [energy]', async () => {
    await put('hang', '');
    const a = await start(undefined);
    expect(models(await a.session.capabilities())).toHaveLength(1);
    expect(a.gpu()).toBeUndefined();
    expect(await readdir(dir)).not.toContain('hung.pid');
  });
});

describe('GPU tools are bounded (issue 28)', () => {
  it.skipIf(process.platform === 'win32')(
    "run without the agent's enrollment code in their environment",
    async () => {
      const tools = join(dir, 'env-tools');
      await mkdir(tools);
      await writeFile(join(tools, 'nvidia-smi'), '#!/bin/sh\nenv\n', { mode: 0o755 });
      process.env.USEPOD_ENROLLMENT_CODE = 'POD-ENROLL-GPUTEST7';
      const runner = toolRunner({ path: tools });
      try {
        const env = await runner.run('nvidia-smi', []);
        // Before: every tool the plugin ran had it.
        expect(env).not.toContain('POD-ENROLL-GPUTEST7');
        expect(env).toMatch(/^PATH=/m);
      } finally {
        runner.stop();
        delete process.env.USEPOD_ENROLLMENT_CODE;
      }
    },
  );

  it('kills a nvidia-smi that hangs and ignores SIGTERM, warns, and yields at the next poll', async () => {
    await put('hang', '');
    // A short deadline here only (elsewhere a fake tool slow to start on a loaded machine would read as a
    // hung one), and not too short: the fake must reach its `sleep` and write hung.pid before it.
    const a = await start({ when_other_process: true }, { plugin: { toolTimeoutMs: 2_000 } });
    await a.session.capabilities();
    const warned = await a.log.waitFor((l) => l.includes('GPU state could not be read'), 10_000);
    expect(warned).toContain('nvidia-smi did not answer in 2 s: killed');
    // The whole tool was killed, the child holding its pipes included.
    const hung = Number(readFileSync(join(dir, 'hung.pid'), 'utf8'));
    await vi.waitFor(() => expect(gone(hung)).toBe(true), SOON);
    const stepAside = a.session.nextFrame('capabilities');
    await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
    await drop('hang');
    expect(models(await stepAside)).toEqual([]);
    expect(await a.t.agent.metricsText()).toMatch(/^usepod_agent_gpu_tool_failures_total [1-9]/m);
  });

  it('does not stay paused for good when the tool breaks while a game held the agent', async () => {
    await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
    const a = await start({ when_other_process: true, cooldown_s: 0.3 });
    const caps = (n: number) =>
      a.session.frames.next((f) => f.type === 'capabilities' && models(f).length === n);
    await a.session.frames.waitFor((f) => f.type === 'capabilities' && models(f).length === 0);
    const back = caps(1);
    await put('driver', '');
    await back;
    await a.log.waitFor((l) => l.includes('the GPUs could not be read for a while: the agent serves again'));
    expect(a.t.agent.holds()).toEqual([]);
    // It reads again: the game is still there, the agent steps aside again.
    const again = caps(0);
    await drop('driver');
    await again;
  });

  it('lifts its holds after cooldown_s though the wall clock stepped back a day meanwhile', async () => {
    // Only Date is faked (it moves on with real time): timers and performance.now are the machine's.
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    try {
      await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
      await put('gpus', `${gpuLine({ temp: 90 })}\n`);
      const a = await start({ when_other_process: true, max_temp_c: 80, cooldown_s: 1.5 });
      await vi.waitFor(() => expect(a.t.agent.holds().map((h) => h.by)).toEqual(['gpu', 'heat']), SOON);
      await put('apps', `${ENGINE_APP}\n`);
      await put('gpus', `${gpuLine({ temp: 60 })}\n`);
      await vi.waitFor(() => expect(a.gpu().yield).toMatchObject({ quiet_since: expect.any(String) }), SOON);
      await new Promise((r) => setTimeout(r, 300));
      // Both cool down now; NTP steps the clock back a day (a dual boot's RTC kept local time).
      vi.setSystemTime(Date.now() - 86_400_000);
      // Fails without the monotonic clock: both holds stay for the day.
      await vi.waitFor(() => expect(a.t.agent.holds()).toEqual([]), SOON);
    } finally {
      vi.useRealTimers();
    }
  });

  it('reads [N/A] free memory as unknown: no pause with nothing else on the GPU', async () => {
    await put('gpus', `${gpuLine({ free: '[N/A]', util: '[Not Supported]' })}\n`);
    const a = await start({ min_free_vram_mb: 2048, max_other_util_pct: 50 });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    await vi.waitFor(() => expect(a.gpu().gpus).toMatchObject([{ free_mb: null, util_pct: null }]), SOON);
    // Several polls later, still serving: nothing was read as 0 MiB free.
    const readAt = a.gpu().read_at;
    await vi.waitFor(() => expect(a.gpu().read_at).not.toBe(readAt), SOON);
    expect(a.t.agent.holds()).toEqual([]);
    expect((await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).type).toBe('job_done');
  });

  it('folds a hostile process name before the hold, the refusal, the log, status and /readyz', async () => {
    const a = await start({ when_other_process: true });
    await a.session.capabilities();
    const stepAside = a.session.nextFrame('capabilities');
    await put('apps', `${ENGINE_APP}\n666, \u001b]0;owned\u0007evil\u001b[2Jgame, 100\n`);
    expect(models(await stepAside)).toEqual([]);
    const reason = a.t.agent.holds()[0]!.reason;
    expect(reason).toMatch(/evil.*game/);
    expect(reason).not.toMatch(CONTROL);
    const refused = await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
    expect(String(refused.message)).not.toMatch(CONTROL);
    expect(a.t.agent.readiness().reason ?? '').not.toMatch(CONTROL);
    const status = a.gpu();
    expect(JSON.stringify(status)).not.toMatch(/\\u00[01][0-9a-f]|\\[bfnrt]/);
    for (const line of a.log.items) {
      expect(line).not.toMatch(CONTROL);
      expect(line).not.toContain('\\u001b');
    }
  });

  it('refuses a tool output past its bound and takes at most 256 processes', async () => {
    const many = Array.from({ length: 5000 }, (_, i) => `${1000 + i}, /usr/bin/python worker${i}.py, 10`);
    await put('apps', `${ENGINE_APP}\n${many.join('\n')}\n`);
    const a = await start({ when_other_process: true }, { plugin: { toolMaxBytes: 64 * 1024 } });
    await a.session.capabilities();
    const warned = await a.log.waitFor((l) => l.includes('GPU state could not be read'));
    expect(warned).toContain('nvidia-smi printed more than 65536 bytes: killed');
    const stepAside = a.session.nextFrame('capabilities');
    await put('apps', `${ENGINE_APP}\n${many.slice(0, 1000).join('\n')}\n`);
    expect(models(await stepAside)).toEqual([]);
    expect((a.gpu().other_processes as unknown[]).length).toBeLessThanOrEqual(8);
  });
});

describe('holds are recomputed at start (issue 28)', () => {
  it('never persists the gpu hold: a restart with the game gone serves at once', async () => {
    const keyPath = join(dir, 'id', 'identity.key');
    await put('apps', `${ENGINE_APP}\n${GAME_APP}\n`);
    const a = await start({ when_other_process: true, cooldown_s: 3600 }, { control: true, keyPath });
    await a.events.waitFor((e) => e.type === 'paused');
    expect(a.t.agent.holds().map((h) => h.by)).toEqual(['gpu']);
    await a.t.stop();
    expect(await readdir(join(dir, 'id'))).not.toContain('pause.json');
    await put('apps', `${ENGINE_APP}\n`);
    const b = await start({ when_other_process: true, cooldown_s: 3600 }, { control: true, keyPath });
    expect(models(await b.session.capabilities())).toHaveLength(1);
    expect(b.t.agent.holds()).toEqual([]);
  });
});

describe('doctor', () => {
  it('warns when [yield] is set but no tool is here', async () => {
    const a = await start({ when_other_process: true }, { plugin: { path: join(dir, 'nowhere') } });
    expect(await a.t.agent.doctor({ engineCapacity: undefined })).toEqual([
      expect.objectContaining({
        name: 'gpu',
        level: 'warn',
        detail: expect.stringMatching(/^\[yield\] is set but neither/),
      }),
    ]);
  });

  it('says what the tool sees, warns when it fails, and when no engine process is on a GPU', async () => {
    const a = await start({ when_other_process: true });
    expect(await a.t.agent.doctor({ engineCapacity: undefined })).toEqual([
      { name: 'gpu', level: 'ok', detail: 'nvidia-smi: 1 GPU (GPU 0 60 °C, 250 W, limit 450 W)' },
    ]);
    await put('apps', `${GAME_APP}\n`);
    expect(await a.t.agent.doctor({ engineCapacity: undefined })).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        detail: 'no engine process (VLLM, vllm) is on a GPU; seen: eldenring.exe',
      }),
    );
    await put('driver', '');
    expect(await a.t.agent.doctor({ engineCapacity: undefined })).toEqual([
      expect.objectContaining({
        level: 'warn',
        detail: expect.stringContaining('the GPU tool fails: nvidia-smi: NVIDIA-SMI has failed'),
      }),
    ]);
  });
});

describe('heat and power guard (issue 31)', () => {
  it('holds the agent while a GPU runs over max_temp_c, tells the owner, and serves after the cooldown', async () => {
    const a = await start({ max_temp_c: 80, resume_below_c: 5, cooldown_s: 0.3 });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    const held = a.session.nextFrame('capabilities');
    await put('gpus', `${gpuLine({ temp: 86 })}\n`);
    expect(models(await held)).toEqual([]);
    // No uuid column in this tool's output: which engines run on the GPU is unknown, the whole agent is held.
    expect(a.t.agent.holds()).toEqual([
      expect.objectContaining({
        by: 'heat',
        reason:
          'too hot: GPU 0 (nvidia-smi) at 86 °C, over max_temp_c 80 (which engines run on it is unknown: the whole agent is held)',
      }),
    ]);
    expect(a.t.agent.holds()[0]?.backends).toBeUndefined();
    expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
      error_code: 'out_of_capacity',
    });
    expect(await a.events.waitFor((e) => e.type === 'notice')).toMatchObject({
      name: 'heat_pause',
      severity: 'warning',
      resolved: false,
    });
    expect(a.gpu()).toMatchObject({ heat: { max_temp_c: 80, held: true } });
    expect(await a.t.agent.metricsText()).toMatch(
      /^usepod_agent_gpu_temperature_celsius\{tool="nvidia-smi",gpu="0"\} 86$/m,
    );
    // Under the limit but not under it less the hysteresis: still held.
    await put('gpus', `${gpuLine({ temp: 77 })}\n`);
    const readAt = a.gpu().read_at;
    await vi.waitFor(() => expect(a.gpu().read_at).not.toBe(readAt), SOON);
    await vi.waitFor(() => expect(a.gpu().gpus).toMatchObject([{ temp_c: 77 }]), SOON);
    const back = a.session.nextFrame('capabilities');
    const coolFrom = Date.now();
    await put('gpus', `${gpuLine({ temp: 70 })}\n`);
    expect(models(await back)).toHaveLength(1);
    expect(Date.now() - coolFrom).toBeGreaterThanOrEqual(250);
    expect(await a.events.waitFor((e) => e.type === 'notice' && e.resolved)).toMatchObject({
      name: 'heat_pause',
    });
  });

  it('a tool whose GPUs change between polls leaves no stale series: only the GPUs it lists now are in /metrics', async () => {
    // 64 GPUs a poll, new indices each poll (0-63, 64-127, ...) until 640-703, which it then keeps.
    await fakeTool(
      'nvidia-smi',
      [
        'case "$*" in',
        '  *query-compute-apps*) cat "$D/apps" ;;',
        '  *query-gpu*) n=$(cat "$D/n" 2>/dev/null || echo 0)',
        '    if [ "$n" -lt 640 ]; then echo $((n + 64)) > "$D/n.tmp"; mv "$D/n.tmp" "$D/n"; fi',
        '    i=$n; while [ $i -lt $((n + 64)) ]; do echo "$i, 10, 3500, 24576, 100, 450, 60, GPU $i"; i=$((i + 1)); done ;;',
        'esac',
        '',
      ].join('\n'),
    );
    const a = await start({ max_temp_c: 100 });
    await vi.waitFor(() => expect((a.gpu().gpus as { index: number }[])[0]?.index).toBe(640), {
      timeout: 15_000,
    });
    const series = (await a.t.agent.metricsText())
      .split('\n')
      .filter((l) => l.startsWith('usepod_agent_gpu_temperature_celsius{'));
    const gpus = series.map((l) => Number(/gpu="(\d+)"/.exec(l)?.[1]));
    expect(gpus.sort((x, y) => x - y)).toEqual(Array.from({ length: 64 }, (_, i) => 640 + i));
  });

  it('withdraws only the hot GPU’s engine (by gpu_uuid): the other GPU’s model serves, jobs in flight finish', async () => {
    const llama = await new LlamacppEmulator().start();
    try {
      const LLAMA = '../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf';
      const uuid = ['GPU-0a1b2c3d-0000-1111-2222-333344445555', 'GPU-9f8e7d6c-0000-1111-2222-333344445555'];
      const gpus = (temp1: number) =>
        `${gpuLine()}, ${uuid[0]}\n${gpuLine({ temp: temp1 }).replace(/^0,/, '1,')}, ${uuid[1]}\n`;
      await put('apps', `${ENGINE_APP}, ${uuid[0]}\n4242, /opt/llama.cpp/llama-server, 6000, ${uuid[1]}\n`);
      await put('gpus', gpus(60));
      const a = await start(
        { max_temp_c: 80, resume_below_c: 5, cooldown_s: 0.3 },
        {
          llamacpp: true,
          extra: {
            backends: [
              { kind: 'vllm', url: engine.url },
              { kind: 'llamacpp', url: llama.url },
            ],
          },
        },
      );
      expect(models(await a.session.capabilities())).toHaveLength(2);
      const label = a.t.agent.backends().find((b) => b.kind === 'llamacpp')?.label;
      // A job on the engine about to be held is in flight when the GPU gets hot: it finishes.
      llama.behave({ kind: 'slow', tokenDelayMs: 150 }, { times: 1 });
      const inFlight = a.session.dispatch({ model_id: LLAMA });
      await vi.waitFor(() => expect(a.t.agent.jobs()).toHaveLength(1), SOON);
      const held = a.session.nextFrame('capabilities');
      await put('gpus', gpus(86));
      expect(models(await held)).toEqual([expect.objectContaining({ model_id: 'Qwen/Qwen3-14B' })]);
      expect(a.t.agent.holds()).toEqual([
        expect.objectContaining({
          by: 'heat',
          reason: 'too hot: GPU 1 (nvidia-smi) at 86 °C, over max_temp_c 80',
          backends: [label],
        }),
      ]);
      expect(await inFlight.done()).toMatchObject({ type: 'job_done' });
      expect(await a.session.dispatch({ model_id: LLAMA }).done()).toMatchObject({
        error_code: 'out_of_capacity',
        message: expect.stringContaining('too hot: GPU 1'),
      });
      expect(await a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
        type: 'job_done',
      });
      expect(await a.events.waitFor((e) => e.type === 'notice')).toMatchObject({
        name: 'heat_pause',
        severity: 'warning',
        title: expect.stringContaining(label!),
      });
      const status = a.t.agent.status();
      expect(status.paused).toBeNull();
      expect(status.holds).toEqual([expect.objectContaining({ by: 'heat', backends: [label] })]);
      expect(a.gpu()).toMatchObject({ heat: { held: true, backends: [label] } });
      const back = a.session.nextFrame('capabilities');
      const coolFrom = Date.now();
      await put('gpus', gpus(70));
      expect(models(await back)).toHaveLength(2);
      expect(Date.now() - coolFrom).toBeGreaterThanOrEqual(250);
      expect(a.t.agent.holds()).toEqual([]);
      expect(await a.session.dispatch({ model_id: LLAMA }).done()).toMatchObject({ type: 'job_done' });
    } finally {
      for (const t of agents) await t.close();
      agents = [];
      await llama.close();
    }
  });

  it('holds on power over max_power_w two polls in a row, not on one spike', async () => {
    const a = await start({ max_power_w: 300, cooldown_s: 0.2 });
    expect(models(await a.session.capabilities())).toHaveLength(1);
    const held = a.session.nextFrame('capabilities');
    await put('gpus', `${gpuLine({ power: 420 })}\n`);
    expect(models(await held)).toEqual([]);
    expect(a.t.agent.holds()[0]?.reason).toMatch(
      /^too hot: GPU 0 \(nvidia-smi\) at 420 W, over max_power_w 300 /,
    );
    expect(await a.t.agent.metricsText()).toMatch(
      /^usepod_agent_gpu_power_watts\{tool="nvidia-smi",gpu="0"\} 420$/m,
    );
  });
});

describe('energy (issue 31)', () => {
  it('counts serving and idle joules from the GPUs’ power, and tells each job its share', async () => {
    await put('gpus', `${gpuLine({ power: 100 })}\n`);
    const plugin = gpuPlugin({ path: tools }) as GpuPlugin;
    const told = new EventLog<JobEnergy>();
    plugin.onJobEnergy((e) => told.push(e));
    const a = await start(undefined, {
      instance: plugin,
      extra: { energy: { price_per_kwh: 0.3 }, yield: { poll_s: 0.1 } },
    });
    await a.session.capabilities();
    await vi.waitFor(
      async () => expect(await a.t.agent.metricsText()).toMatch(/energy_joules_total\{kind="idle"\} [1-9]/),
      SOON,
    );
    const measuredFrom = Date.now();
    engine.behave({ kind: 'slow', tokenDelayMs: 60 });
    await put('gpus', `${gpuLine({ power: 300 })}\n`);
    const job = a.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
    expect((await job.done()).type).toBe('job_done');
    const mine = await told.waitFor((e) => e.jobId === job.jobId);
    // About 300 W for the job's second or so: the figure is the integral over the polls it ran in.
    expect(mine.complete).toBe(true);
    expect(mine.wh).toBeGreaterThan(0);
    expect(mine.wh).toBeLessThan((300 * 10) / 3600);
    expect(await a.t.agent.metricsText()).toMatch(
      /^usepod_agent_energy_joules_total\{kind="serving"\} [1-9]/m,
    );
    expect(a.gpu()).toMatchObject({
      energy: {
        serving_wh: expect.any(Number),
        idle_wh: expect.any(Number),
        price_per_kwh: 0.3,
        cost_usdc: expect.any(Number),
      },
    });
    expect(plugin.pricePerKwh).toBe(0.3);
    expect(plugin.energy?.whBetween(measuredFrom, Date.now() - 300).covered).toBe(true);
  });
});
