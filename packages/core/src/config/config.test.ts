import fsp, { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isUsepodError } from '../errors.js';
import { loadConfig } from './load.js';
import { validateConfig } from './validate.js';

/** The example of PROTOCOL.md section 8, as a 0.3.x operator has it. */
export const RUST_AGENT_TOML = `
[operator]            # optional, metadata only
display_name  = "BlueBoxRig-01"
wallet        = "11111111111111111111111111111111"   # Solana address
contact_email = "ops@example.com"

[coordinator]
url             = "wss://api.usepod.ai/provider/connect"
enrollment_code = "POD-ENROLL-7K9X4LM2"   # optional

[identity]            # optional
key_path = "~/.usepod-agent/identity.key"

[[backends]]
kind = "vllm"                  # vllm | llamacpp | lmstudio | ollama | plugin kinds
url  = "http://localhost:8000"
models = ["meta-llama/Llama-3.3-70B-Instruct"]   # optional allow-list

[[backends]]
kind = "openrouter"            # remote pass-through kinds take a key from the env
api_key_env = "OPENROUTER_API_KEY"
markup = 0.05

[pricing]
default_input_per_1m  = 500_000
default_output_per_1m = 750_000

[pricing.models]
"meta-llama/Llama-3.3-70B-Instruct" = { input_per_1m = 300_000, output_per_1m = 450_000 }

[limits]              # optional
max_concurrent        = 8          # 1..256, default 8
max_tokens_per_minute = 200_000    # optional

[observability]       # optional
prometheus_addr = "127.0.0.1:9090"
log_level       = "info"
`;

let dir: string;
const savedXdg = process.env.XDG_CONFIG_HOME;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-cfg-'));
  process.env.XDG_CONFIG_HOME = join(dir, 'xdg');
});
afterEach(async () => {
  if (savedXdg === undefined) delete process.env.XDG_CONFIG_HOME;
  else process.env.XDG_CONFIG_HOME = savedXdg;
  await rm(dir, { recursive: true, force: true });
});

function fails(raw: unknown, pattern: RegExp, opts = {}) {
  let err: unknown;
  try {
    validateConfig(raw, { source: '/etc/agent.toml', ...opts });
  } catch (e) {
    err = e;
  }
  expect(isUsepodError(err, 'USEPOD_CONFIG_INVALID'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(/^\/etc\/agent\.toml: /);
  expect((err as Error).message).toMatch(pattern);
}

describe('config validation (PROTOCOL.md section 8)', () => {
  it('reads the 0.3.x example file into a typed Config', async () => {
    const path = join(dir, 'agent.toml');
    await writeFile(path, RUST_AGENT_TOML);
    const { config } = await loadConfig({ path });
    expect(config.source).toBe(path);
    expect(config.operator?.display_name).toBe('BlueBoxRig-01');
    expect(config.coordinator).toEqual({
      url: 'wss://api.usepod.ai/provider/connect',
      enrollment_code: 'POD-ENROLL-7K9X4LM2',
    });
    expect(config.backends).toEqual([
      { kind: 'vllm', url: 'http://localhost:8000', models: ['meta-llama/Llama-3.3-70B-Instruct'] },
      { kind: 'openrouter', api_key_env: 'OPENROUTER_API_KEY', markup: 0.05 },
    ]);
    expect(config.pricing.models['meta-llama/Llama-3.3-70B-Instruct']).toEqual({
      input_per_1m: 300_000,
      output_per_1m: 450_000,
    });
    expect(config.limits).toMatchObject({ max_concurrent: 8, max_tokens_per_minute: 200_000 });
    expect(config.observability.prometheus_addr).toBe('127.0.0.1:9090');
  });

  it('applies defaults to an empty file', () => {
    const c = validateConfig({});
    expect(c.coordinator.url).toBe('wss://api.usepod.ai/provider/connect');
    expect(c.identity.key_path).toBe('~/.usepod-agent/identity.key');
    expect(c.limits.max_concurrent).toBe(8);
    expect(c.limits.max_tokens_per_minute).toBeUndefined();
    expect(c.backends).toEqual([]);
  });

  it('coordinator.url must parse', () =>
    fails({ coordinator: { url: 'not a url' } }, /coordinator\.url: is not a valid URL/));
  it('coordinator.url must be wss://', () =>
    fails({ coordinator: { url: 'https://x/y' } }, /coordinator\.url: must use wss:\/\//));
  it('ws:// needs --allow-insecure', () => {
    fails({ coordinator: { url: 'ws://127.0.0.1:1/p' } }, /coordinator\.url: .*--allow-insecure/);
    expect(
      validateConfig({ coordinator: { url: 'ws://127.0.0.1:1/p' } }, { allowInsecure: true }).coordinator.url,
    ).toBe('ws://127.0.0.1:1/p');
  });
  it('local kinds need a url', () =>
    fails({ backends: [{ kind: 'ollama' }] }, /backends\[0\]\.url: is required for kind "ollama"/));
  it('local kinds need a valid url', () =>
    fails({ backends: [{ kind: 'vllm', url: 'localhost:8000' }] }, /backends\[0\]\.url: must be an http/));
  it('an entry names a url or a key variable', () =>
    fails({ backends: [{ kind: 'any-kind' }] }, /backends\[0\]\.url: is required for kind "any-kind"/));
  it('api_key_env names a variable, not a key', () =>
    fails(
      { backends: [{ kind: 'openrouter', api_key_env: 'sk-or-v1-abc def' }] },
      /api_key_env: must be the name of an environment variable/,
    ));
  it('same kind and url is a duplicate', () =>
    fails(
      {
        backends: [
          { kind: 'vllm', url: 'http://localhost:8000' },
          { kind: 'vllm', url: 'http://localhost:8000/' },
        ],
      },
      /backends\[1\]: is a duplicate: same kind and url as backends\[0\]/,
    ));
  it('one engine behind localhost, 127.0.0.1 and [::1] is a duplicate (issue 28)', () => {
    for (const [a, b] of [
      ['http://127.0.0.1:8080', 'http://localhost:8080'],
      ['http://localhost:8080/', 'http://[::1]:8080'],
      ['http://LOCALHOST:80', 'http://127.0.0.1'],
    ] as const)
      fails(
        {
          backends: [
            { kind: 'llamacpp', url: a },
            { kind: 'llamacpp', url: b },
          ],
        },
        /backends\[1\]: is a duplicate: same kind and engine as backends\[0\] \(http:\/\/\S+ and http:\/\/\S+ are one port on this machine\)/,
      );
    // Another port, or another machine, is another engine.
    expect(
      validateConfig({
        backends: [
          { kind: 'llamacpp', url: 'http://localhost:8080' },
          { kind: 'llamacpp', url: 'http://127.0.0.1:8081' },
          { kind: 'llamacpp', url: 'http://10.0.0.5:8080' },
        ],
      }).backends,
    ).toHaveLength(3);
  });
  it('same kind and api_key_env is a duplicate', () =>
    fails(
      {
        backends: [
          { kind: 'openrouter', api_key_env: 'K' },
          { kind: 'openrouter', api_key_env: 'K' },
        ],
      },
      /backends\[1\]: is a duplicate: same kind and api_key_env/,
    ));
  it('same url with another kind is not a duplicate', () => {
    expect(
      validateConfig({
        backends: [
          { kind: 'vllm', url: 'http://h:1' },
          { kind: 'ollama', url: 'http://h:1' },
        ],
      }).backends,
    ).toHaveLength(2);
  });
  it('default prices must be > 0', () => {
    fails({ pricing: { default_input_per_1m: 0 } }, /pricing\.default_input_per_1m: /);
    fails({ pricing: { default_output_per_1m: -5 } }, /pricing\.default_output_per_1m: /);
  });
  it('max_concurrent must be within 1..256', () => {
    fails({ limits: { max_concurrent: 0 } }, /limits\.max_concurrent: /);
    fails({ limits: { max_concurrent: 257 } }, /limits\.max_concurrent: /);
    expect(validateConfig({ limits: { max_concurrent: 256 } }).limits.max_concurrent).toBe(256);
  });
  it('an unknown key inside a [[backends]] entry is an error', () =>
    fails(
      { backends: [{ kind: 'vllm', url: 'http://h:1', modles: [] }] },
      /backends\[0\]\.modles: unknown key "modles"/,
    ));
  it('a wrong type names the key', () =>
    fails({ limits: { max_concurrent: 'eight' } }, /limits\.max_concurrent: expected number/));
  it('prometheus_addr must be host:port or off', () => {
    fails({ observability: { prometheus_addr: 'nonsense' } }, /observability\.prometheus_addr/);
    expect(validateConfig({ observability: { prometheus_addr: 'off' } }).observability.prometheus_addr).toBe(
      'off',
    );
  });
});

describe('config lookup (cosmiconfig)', () => {
  it('finds the platform config dir first, then ./agent.toml', async () => {
    const cwd = join(dir, 'work');
    await mkdir(cwd, { recursive: true });
    await writeFile(join(cwd, 'agent.toml'), '[limits]\nmax_concurrent = 3\n');
    expect((await loadConfig({ cwd })).config.limits.max_concurrent).toBe(3);
    await mkdir(join(dir, 'xdg', 'usepod-agent'), { recursive: true });
    await writeFile(join(dir, 'xdg', 'usepod-agent', 'agent.toml'), '[limits]\nmax_concurrent = 5\n');
    const found = await loadConfig({ cwd });
    expect(found.config.limits.max_concurrent).toBe(5);
    expect(found.path).toBe(join(dir, 'xdg', 'usepod-agent', 'agent.toml'));
  });

  it.each([
    ['.usepodrc.json', JSON.stringify({ limits: { max_concurrent: 4 } })],
    ['.usepodrc.yaml', 'limits:\n  max_concurrent: 4\n'],
    ['.usepodrc', '{"limits": {"max_concurrent": 4}}'],
    ['usepod.config.mjs', 'export default { limits: { max_concurrent: 4 } };'],
    ['usepod.config.cjs', 'module.exports = { limits: { max_concurrent: 4 } };'],
    [
      'usepod.config.ts',
      'const c: { limits: { max_concurrent: number } } = { limits: { max_concurrent: 4 } };\nexport default c;',
    ],
    ['package.json', JSON.stringify({ name: 'x', usepod: { limits: { max_concurrent: 4 } } })],
  ])('finds %s in the current folder, and takes it with --config', async (name, body) => {
    const cwd = join(dir, 'work');
    await mkdir(cwd, { recursive: true });
    await writeFile(join(cwd, name), body);
    expect((await loadConfig({ cwd })).config.limits.max_concurrent).toBe(4);
    expect((await loadConfig({ path: join(cwd, name) })).config.limits.max_concurrent).toBe(4);
  });

  it('reports a missing file, a missing default, and a TOML syntax error with its place', async () => {
    const missing = await loadConfig({ path: join(dir, 'nope.toml') }).catch((e: unknown) => e);
    expect(isUsepodError(missing, 'USEPOD_CONFIG_NOT_FOUND')).toBe(true);
    const none = await loadConfig({ cwd: dir }).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/no config file found.*usepod-agent setup/);
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, '[limits\nmax_concurrent = 3\n');
    const parse = await loadConfig({ path: bad }).catch((e: unknown) => e);
    expect(isUsepodError(parse, 'USEPOD_CONFIG_PARSE')).toBe(true);
    expect((parse as Error).message).toContain(bad);
    expect((parse as Error).message.split('\n')).toHaveLength(1);
  });
});

describe('config read once', () => {
  // A second read of the path (cosmiconfig's own `load` did one, unbounded) would validate another file
  // than the one checked: here the file is swapped for another as anything reads it again by name.
  it.each([
    ['agent.json', '{"limits": {"max_concurrent": 4}}', '{"limits": {"max_concurrent": 9}}'],
    ['agent.yaml', 'limits:\n  max_concurrent: 4\n', 'limits:\n  max_concurrent: 9\n'],
    ['.usepodrc', 'limits:\n  max_concurrent: 4\n', 'limits:\n  max_concurrent: 9\n'],
    ['agent.toml', '[limits]\nmax_concurrent = 4\n', '[limits]\nmax_concurrent = 9\n'],
  ])('reads %s once, through the bounded reader', async (name, first, swapped) => {
    const path = join(dir, name);
    await writeFile(path, first);
    const { readFile } = fsp;
    let rereads = 0;
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation(async (file, ...rest) => {
      if (file === path) {
        rereads++;
        await writeFile(`${path}.new`, swapped);
        await rename(`${path}.new`, path);
      }
      return readFile(file, ...(rest as [])) as never;
    });
    try {
      const { config } = await loadConfig({ path });
      expect(config.limits.max_concurrent).toBe(4);
      expect(rereads).toBe(0);
    } finally {
      spy.mockRestore();
    }
  });

  it('refuses a "$import" (cosmiconfig read the files it names, unbounded) in one line', async () => {
    await writeFile(join(dir, 'other.json'), '{"limits": {"max_concurrent": 9}}');
    const path = join(dir, 'agent.json');
    await writeFile(path, '{"$import": "other.json", "limits": {"max_concurrent": 4}}');
    const err = await loadConfig({ path }).catch((e: unknown) => e);
    expect(isUsepodError(err, 'USEPOD_CONFIG_PARSE')).toBe(true);
    expect((err as Error).message).toBe(
      `${path}: "$import" is not supported (other files are not read); put their settings in this file`,
    );
  });
});

describe('config from the environment (containers, issue 20)', () => {
  const ENV = {
    USEPOD_COORDINATOR_URL: 'wss://coordinator.example/provider/connect',
    USEPOD_ENROLLMENT_CODE: 'POD-ENROLL-FROMSECRET',
    USEPOD_IDENTITY_PATH: '/var/lib/usepod-agent/identity.key',
    USEPOD_BACKEND_KIND: 'vllm',
    USEPOD_BACKEND_URL: 'http://127.0.0.1:8000',
    USEPOD_BACKEND_MODELS: 'Qwen/Qwen3-14B, meta-llama/Llama-3.1-8B-Instruct',
    USEPOD_MAX_CONCURRENT: '12',
    USEPOD_PROMETHEUS_ADDR: '0.0.0.0:9090',
  };

  it('is the whole config when there is no file', async () => {
    const { config, path } = await loadConfig({ cwd: dir, env: ENV });
    expect(path).toBe('(environment)');
    expect(config.coordinator).toMatchObject({
      url: ENV.USEPOD_COORDINATOR_URL,
      enrollment_code: 'POD-ENROLL-FROMSECRET',
    });
    expect(config.identity.key_path).toBe('/var/lib/usepod-agent/identity.key');
    expect(config.backends).toEqual([
      expect.objectContaining({
        kind: 'vllm',
        url: 'http://127.0.0.1:8000',
        models: ['Qwen/Qwen3-14B', 'meta-llama/Llama-3.1-8B-Instruct'],
      }),
    ]);
    expect(config.limits.max_concurrent).toBe(12);
    expect(config.observability.prometheus_addr).toBe('0.0.0.0:9090');
  });

  it('overrides the file key by key; a backend from the environment replaces the file’s', async () => {
    const path = join(dir, 'agent.toml');
    await writeFile(
      path,
      '[limits]\nmax_concurrent = 3\ndrain_timeout_s = 50\n[[backends]]\nkind = "ollama"\nurl = "http://127.0.0.1:11434"\n',
    );
    const { config } = await loadConfig({
      path,
      env: {
        USEPOD_MAX_CONCURRENT: '5',
        USEPOD_BACKEND_KIND: 'llamacpp',
        USEPOD_BACKEND_URL: 'http://127.0.0.1:8080',
      },
    });
    expect(config.limits).toMatchObject({ max_concurrent: 5, drain_timeout_s: 50 });
    expect(config.backends.map((b) => b.kind)).toEqual(['llamacpp']);
  });

  it('names the variable, not a line, when its value is wrong', async () => {
    const path = join(dir, 'agent.toml');
    await writeFile(path, '[limits]\nmax_concurrent = 3\n');
    const err = await loadConfig({ path, env: { USEPOD_MAX_CONCURRENT: 'lots' } }).catch((e: unknown) => e);
    expect(isUsepodError(err, 'USEPOD_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/^\$USEPOD_MAX_CONCURRENT: limits\.max_concurrent/);
    const none = await loadConfig({ cwd: dir, env: { USEPOD_BACKEND_URL: 'not a url' } }).catch(
      (e: unknown) => e,
    );
    expect((none as Error).message).toMatch(/\$USEPOD_BACKEND_(URL|KIND)/);
  });
});

describe('values at their documented bounds', () => {
  it('refuses a discovery interval past a day: a timer past 2^31-1 ms would fire at once, in a loop', () => {
    expect(() => validateConfig({ discovery: { interval_s: 3_000_000 } })).toThrow(/discovery\.interval_s/);
    expect(validateConfig({ discovery: { interval_s: 86_400 } }).discovery.interval_s).toBe(86_400);
  });

  it('keeps a section no core key names for the plugin that claims it', () => {
    const config = validateConfig({ battery: { min_percent: 50 } });
    expect(config.battery).toEqual({ min_percent: 50 });
  });
});
