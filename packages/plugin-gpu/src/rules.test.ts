import { describe, expect, it } from 'vitest';
import {
  type Gpu,
  type GpuState,
  parseNvidiaApps,
  parseNvidiaGpus,
  parseRocmCards,
  parseRocmPids,
} from './read.js';
import { engineProcessNames, yieldReason } from './rules.js';
import { backendsOn } from './scope.js';
import { yieldSection } from './section.js';

const cfg = (y: Record<string, unknown>) => yieldSection.parse(y);
/** What the llama.cpp plugin declares (BackendKind.processNames). */
const ENGINES = ['llama-server'];
const gpu = (o: Partial<Gpu>): Gpu => ({
  tool: 'nvidia-smi',
  index: 0,
  name: undefined,
  utilPct: undefined,
  freeMb: undefined,
  totalMb: undefined,
  powerW: undefined,
  powerLimitW: undefined,
  tempC: undefined,
  ...o,
});
const engineOnly: GpuState = {
  processes: [{ pid: 1, name: '/usr/bin/llama-server', usedMb: 9000 }],
  gpus: [gpu({ utilPct: 95, freeMb: 1000, totalMb: 24576 })],
};
const withTrainer: GpuState = {
  ...engineOnly,
  processes: [...engineOnly.processes, { pid: 7, name: '/home/me/venv/bin/python train.py', usedMb: 8000 }],
};

describe('yieldReason: when the agent steps aside', () => {
  it('leaves its own engines alone, and names another process', () => {
    expect(yieldReason(cfg({ when_other_process: true }), ENGINES, engineOnly)).toBeUndefined();
    expect(yieldReason(cfg({ when_other_process: true }), ENGINES, withTrainer)).toBe(
      'python train.py (pid 7) uses a GPU',
    );
  });

  it('knows an engine by the 15-character comm rocm-smi reports', () => {
    const rocm: GpuState = {
      processes: [{ pid: 3, name: 'my-inference-se', usedMb: 9000 }],
      gpus: [gpu({ utilPct: 50, freeMb: 9000, totalMb: 24576 })],
    };
    expect(yieldReason(cfg({ when_other_process: true }), ['my-inference-server'], rocm)).toBeUndefined();
    expect(yieldReason(cfg({ when_other_process: true }), ['llama-server'], rocm)).toMatch(/my-inference-se/);
  });

  it('steps aside under a free-VRAM floor, and when a GPU another process is on is busier than allowed', () => {
    expect(yieldReason(cfg({ min_free_vram_mb: 2048 }), ENGINES, engineOnly)).toBe(
      'a GPU has 1000 MiB free, under min_free_vram_mb 2048',
    );
    expect(yieldReason(cfg({ max_other_util_pct: 50 }), ENGINES, engineOnly)).toBeUndefined();
    expect(yieldReason(cfg({ max_other_util_pct: 50 }), ENGINES, withTrainer)).toMatch(
      /^a GPU is 95% busy with python/,
    );
  });

  it('skips figures and names the tool did not know (issue 28)', () => {
    const unknown: GpuState = {
      processes: [...engineOnly.processes, { pid: 9, name: undefined, usedMb: undefined }],
      gpus: [gpu({})],
    };
    const all = cfg({ when_other_process: true, min_free_vram_mb: 2048, max_other_util_pct: 10 });
    expect(yieldReason(all, ENGINES, unknown)).toBeUndefined();
  });

  it('takes the engines’ process names from the plugins of the configured kinds, or the config', () => {
    const kinds = [{ processNames: ['VLLM', 'vllm'] }];
    expect(engineProcessNames(cfg({}), kinds)).toEqual(['VLLM', 'vllm']);
    expect(engineProcessNames(cfg({ engine_processes: ['my-engine'] }), kinds)).toEqual(['my-engine']);
  });
});

describe('reading the tools (issue 28)', () => {
  it('reads [N/A], [Not Supported] and garbage as unknown, never 0', () => {
    const [g] = parseNvidiaGpus('0, [N/A], [Not Supported], 24576, [N/A], 1e9, -12abc, NVIDIA RTX A4000\n');
    expect(g).toEqual({
      tool: 'nvidia-smi',
      index: 0,
      name: 'NVIDIA RTX A4000',
      utilPct: undefined,
      freeMb: undefined,
      totalMb: 24576,
      powerW: undefined,
      powerLimitW: undefined,
      tempC: undefined,
    });
    expect(parseNvidiaApps('[N/A], [Insufficient Permissions], [N/A]\n')).toEqual([
      { pid: undefined, name: undefined, usedMb: undefined },
    ]);
    expect(
      yieldReason(cfg({ min_free_vram_mb: 2048 }), ENGINES, { processes: [], gpus: [g!] }),
    ).toBeUndefined();
  });

  it('reads power and temperature, and keeps commas of a path in a name', () => {
    expect(
      parseNvidiaGpus('1, 40, 20000, 24576, 287.52, 450.00, 71, NVIDIA GeForce RTX 4090\n')[0],
    ).toMatchObject({
      index: 1,
      powerW: 287.52,
      powerLimitW: 450,
      tempC: 71,
    });
    expect(parseNvidiaApps('42, /opt/a,b/llama-server, 900\n')[0]?.name).toBe('/opt/a,b/llama-server');
  });

  it('reads the GPU uuid as the last column when the tool gives it, and none when it does not (issue 31)', () => {
    const u = 'GPU-0a1b2c3d-0000-1111-2222-333344445555';
    expect(parseNvidiaApps(`42, /opt/a,b/llama-server, 900, ${u}\n`)[0]).toEqual({
      pid: 42,
      name: '/opt/a,b/llama-server',
      usedMb: 900,
      gpuUuid: u,
    });
    expect(parseNvidiaApps('42, llama-server, 900\n')[0]).not.toHaveProperty('gpuUuid');
    expect(parseNvidiaGpus(`1, 40, 20000, 24576, 287, 450, 71, NVIDIA RTX 4090, ${u}\n`)[0]).toMatchObject({
      index: 1,
      name: 'NVIDIA RTX 4090',
      uuid: u,
    });
    // A name with a comma and no uuid column: the name keeps its comma, no uuid is made up.
    const [g] = parseNvidiaGpus('1, 40, 20000, 24576, 287, 450, 71, NVIDIA, RTX\n');
    expect(g?.name).toBe('NVIDIA,RTX');
    expect(g).not.toHaveProperty('uuid');
    // Not a uuid (another user's choice in a name field, or garbage): not taken for one.
    expect(parseNvidiaApps('42, x, 900, GPU-\u001b[2J\n')[0]).not.toHaveProperty('gpuUuid');
  });

  it('folds control characters out of names and bounds what it takes', () => {
    const [p] = parseNvidiaApps('666, \u001b]0;owned\u0007evil\u001b[2Jgame, 1\n');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
    expect(p?.name).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(p?.name).toContain('evil');
    const many = Array.from({ length: 1000 }, (_, i) => `${i + 1}, x${'y'.repeat(500)}, 1`).join('\n');
    const ps = parseNvidiaApps(many);
    expect(ps).toHaveLength(256);
    expect(ps[0]!.name!.length).toBeLessThanOrEqual(201);
    expect(parseNvidiaGpus(Array(500).fill('0, 1, 2, 3, 4, 5, 6, x').join('\n'))).toHaveLength(64);
  });

  it('reads rocm-smi’s fields the same way: N/A is unknown', () => {
    const cards = parseRocmCards(
      JSON.stringify({
        card0: {
          'GPU use (%)': 'N/A',
          'VRAM Total Memory (B)': 'N/A',
          'VRAM Total Used Memory (B)': String(2 ** 30),
          'Current Socket Graphics Package Power (W)': '301.5',
          'Temperature (Sensor edge) (C)': 'N/A',
          'Temperature (Sensor junction) (C)': '88.0',
        },
        system: { 'Driver version': '6.8' },
      }),
    );
    expect(cards).toEqual([
      expect.objectContaining({
        tool: 'rocm-smi',
        index: 0,
        utilPct: undefined,
        freeMb: undefined,
        powerW: 301.5,
        tempC: 88,
      }),
    ]);
    expect(
      parseRocmPids(
        JSON.stringify({ system: { PID12: 'bad\u001b[2Jname, 1, N/A, 0, 0', x: 'No KFD PIDs' } }),
      ),
    ).toEqual([{ pid: 12, name: 'bad [2Jname', usedMb: undefined }]);
    expect(() => parseRocmCards('WARNING: not json')).toThrow(/not JSON/);
    // A card number no machine has is the card's place, as nvidia-smi's index: bounded keys and labels.
    const odd = parseRocmCards(
      JSON.stringify({ card3: {}, card99999999999999999999: {}, [`card${'9'.repeat(400)}`]: {} }),
    );
    expect(odd.map((c) => c.index)).toEqual([3, 1, 2]);
  });
});

describe('backendsOn: which backends run on the hot GPUs (issue 31)', () => {
  const kinds = [
    { kind: 'vllm', processNames: ['VLLM', 'vllm'] },
    { kind: 'llamacpp', processNames: ['llama-server'] },
  ];
  const backends = [
    { label: 'big', kind: 'vllm', url: 'http://127.0.0.1:8000' },
    { label: 'small-a', kind: 'llamacpp', url: 'http://127.0.0.1:8080' },
    { label: 'small-b', kind: 'llamacpp', url: 'http://127.0.0.1:8081' },
  ];
  const processes = [
    { pid: 1, name: 'VLLM::EngineCore', usedMb: 20000, gpuUuid: 'GPU-a' },
    { pid: 2, name: '/usr/bin/llama-server', usedMb: 6000, gpuUuid: 'GPU-b' },
  ];

  it('names the backends of the kinds whose engine runs there; two of one kind are both taken', () => {
    expect(backendsOn([gpu({ uuid: 'GPU-a' })], processes, kinds, backends)).toEqual(['big']);
    expect(backendsOn([gpu({ uuid: 'GPU-b' })], processes, kinds, backends)).toEqual(['small-a', 'small-b']);
  });

  it('cannot tell without a uuid (rocm-smi), or with no engine on the GPU: undefined, the whole agent', () => {
    expect(backendsOn([gpu({})], processes, kinds, backends)).toBeUndefined();
    expect(backendsOn([gpu({ uuid: 'GPU-c' })], processes, kinds, backends)).toBeUndefined();
    expect(
      backendsOn([gpu({ uuid: 'GPU-a' }), gpu({ index: 1 })], processes, kinds, backends),
    ).toBeUndefined();
    const untold = processes.map(({ gpuUuid: _, ...p }) => p);
    expect(backendsOn([gpu({ uuid: 'GPU-a' })], untold, kinds, backends)).toBeUndefined();
  });
});
