import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;
let env: NodeJS.ProcessEnv;

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Out> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...env, ...extraEnv }, cwd: dir },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-cli-'));
  // No config or plugins of the developer's own leak in.
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_DATA_HOME: join(dir, 'data'),
  };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function expectOneLine(out: Out, pattern: RegExp) {
  expect(out.code).toBe(2);
  expect(out.stdout).toBe('');
  // One line that says what to fix (with its error code), and for a coded error the hint on the next.
  const lines = out.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^usepod-agent: /);
  expect(lines[0]).toMatch(pattern);
  if (/\(USEPOD_[A-Z_]+\)$/.test(lines[0]!)) {
    expect(lines, out.stderr).toHaveLength(2);
    expect(lines[1]).toMatch(/^ {2}hint: \S/);
  } else {
    expect(lines, out.stderr).toHaveLength(1);
  }
  expect(out.stderr).not.toMatch(/\n\s+at /);
}

/**
 * For a test that starts the CLI five or six times (npm once): each start is ~0.5 s on a quiet VM, several
 * seconds on a loaded one (a CI run beside helpers timed two out at the 20 s default). Not a timing assert.
 */
const SPAWNS_TIMEOUT_MS = 90_000;

describe('usepod-agent CLI', () => {
  it('prints its version', async () => {
    const out = await cli(['version']);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^usepod-agent\/0\.\d+\.\d+ core\/0\.\d+\.\d+ node\/v\d+/);
    const json = JSON.parse((await cli(['version', '--json'])).stdout);
    expect(json).toMatchObject({
      agent: expect.any(String),
      core: expect.any(String),
      node: process.version,
    });
  });

  it('lists its commands in --help', async () => {
    const out = await cli(['--help']);
    expect(out.code).toBe(0);
    for (const c of ['run', 'validate', 'identity', 'version', 'demo', 'plugins'])
      expect(out.stdout).toContain(c);
  });

  it('answers a mistyped command in one line with the command that was meant, exit 2', async () => {
    for (const [typed, meant] of [
      [['stauts'], 'status'],
      [['servce', 'install'], 'service install'],
      [['plugins', 'instal'], 'plugins install'],
    ] as const) {
      const out = await cli([...typed]);
      expectOneLine(
        out,
        new RegExp(`'${typed.join(' ')}' is not a usepod-agent command \\(USEPOD_USAGE\\)$`),
      );
      expect(out.stderr).toContain(`did you mean 'usepod-agent ${meant}'?`);
    }
    // Nothing close: no guess, still the way to the list.
    const far = await cli(['zzzqqq']);
    expectOneLine(far, /'zzzqqq' is not a usepod-agent command/);
    expect(far.stderr).not.toContain('did you mean');
    expect(far.stderr).toContain("'usepod-agent help' lists the commands");
  });

  it(
    'answers plugins uninstall of a built-in or of nothing installed, and link of no package, in one line, exit 2',
    async () => {
      const builtin = await cli(['plugins', 'uninstall', '@usepod-agent/plugin-vllm']);
      expectOneLine(builtin, /@usepod-agent\/plugin-vllm ships with usepod-agent and cannot be uninstalled/);
      expect(builtin.stderr).toContain('[[backends]]');
      for (const verb of ['uninstall', 'remove']) {
        const none = await cli(['plugins', verb, 'nope-plugin']);
        expectOneLine(none, /nope-plugin is not installed \(USEPOD_USAGE\)$/);
      }
      // oclif's answer for a folder that is no package was a dump of its internal state after a spinner.
      const link = await cli(['plugins', 'link', join(dir, 'no-such-folder')]);
      expectOneLine(link, /no-such-folder has no package\.json with a name \(USEPOD_USAGE\)$/);
      // A failed npm install: npm's own lines say why; ours ends it in one line, not npm's command line.
      const install = await cli(['plugins', 'install', `file:${join(dir, 'no-such-package')}`]);
      expect(install.code).toBe(1);
      const last = install.stderr.trimEnd().split('\n').at(-1);
      expect(last).toMatch(
        /^usepod-agent: npm could not install file:.*no-such-package \(exit \d+\); its lines above say why$/,
      );
      expect(install.stderr).not.toMatch(/›|Try this|\n\s+at /);
    },
    SPAWNS_TIMEOUT_MS,
  );

  it('validates a good config and names each backend plugin', async () => {
    const path = join(dir, 'good.toml');
    await writeFile(
      path,
      '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n\n[[backends]]\nkind = "openrouter"\napi_key_env = "OR_KEY"\n',
    );
    const out = await cli(['validate', '--config', path]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`ok: ${path}`);
    expect(out.stdout).toContain('@usepod-agent/plugin-vllm');
    expect(out.stdout).toContain('@usepod-agent/plugin-openai-compatible');
  });

  it('reports a bad config in one line naming the key and its file:line:column, exit 2', async () => {
    const path = join(dir, 'bad.toml');
    await writeFile(path, '[limits]\nmax_concurrent = 999\n');
    expectOneLine(
      await cli(['validate', '--config', path]),
      new RegExp(`${path}:2:1: limits\\.max_concurrent: `),
    );
    expectOneLine(await cli(['run', '--config', path]), /bad\.toml:2:1: limits\.max_concurrent/);
  });

  it('names file:line:column of TOML, YAML and JSON syntax errors, and lists every mistake at once', async () => {
    const cases: [string, string, RegExp][] = [
      ['syntax.toml', '[coordinator\nurl = 1\n', /syntax\.toml:1:13: illegal character in key/],
      [
        '.usepodrc.yaml',
        'coordinator:\n  url: [1, 2\n',
        /\.usepodrc\.yaml:3:1: unexpected end of the stream/,
      ],
      [
        '.usepodrc.json',
        '{\n  "coordinator": {\n    "url": 1,\n  }\n',
        /\.usepodrc\.json:4:3: Expected double-quoted property name/,
      ],
    ];
    // In a folder of their own: the default lookup searches the current folder for these names.
    await mkdir(join(dir, 'formats'), { recursive: true });
    for (const [name, text, pattern] of cases) {
      const path = join(dir, 'formats', name);
      await writeFile(path, text);
      expectOneLine(await cli(['validate', '--config', path]), pattern);
    }
    const path = join(dir, 'many.toml');
    await writeFile(
      path,
      '[coordinator]\nurl = "ftp://x"\n\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n\n[[backends]]\nkind = "ollama"\nurl = "not a url"\n\n[limits]\nmax_concurrent = 999\n',
    );
    const out = await cli(['validate', '--config', path]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(`3 mistakes in ${path}:`);
    expect(out.stderr).toContain(`${path}:13:1: limits.max_concurrent: Too big`);
    expect(out.stderr).toContain(`${path}:2:1: coordinator.url: must use wss://`);
    expect(out.stderr).toContain(`${path}:10:1: backends[1].url: is not a valid URL`);
  });

  it(
    'reports a TOML syntax error, a missing file, no default config, and a bad flag in one line',
    async () => {
      const path = join(dir, 'syntax.toml');
      await writeFile(path, '[coordinator\n');
      expectOneLine(await cli(['validate', '--config', path]), /syntax\.toml/);
      expectOneLine(
        await cli(['validate', '--config', join(dir, 'missing.toml')]),
        /missing\.toml does not exist/,
      );
      expectOneLine(await cli(['validate']), /no config file found.*usepod-agent setup/);
      expectOneLine(await cli(['run', '--bogus']), /Nonexistent flag: --bogus \(see --help\)/);
      expectOneLine(await cli(['run', '--log-format', 'yaml']), /--log-format/);
    },
    SPAWNS_TIMEOUT_MS,
  );

  it('names the packages it looked for when no plugin provides a kind', async () => {
    const path = join(dir, 'kind.toml');
    await writeFile(path, '[[backends]]\nkind = "sglang"\nurl = "http://127.0.0.1:30000"\n');
    expectOneLine(await cli(['validate', '--config', path]), /kind "sglang".*usepod-agent-plugin-sglang/);
  });

  it('refuses ws:// without --allow-insecure', async () => {
    const path = join(dir, 'ws.toml');
    await writeFile(path, '[coordinator]\nurl = "ws://127.0.0.1:9/provider/connect"\n');
    expectOneLine(await cli(['validate', '--config', path]), /--allow-insecure/);
    expect((await cli(['validate', '--config', path, '--allow-insecure'])).code).toBe(0);
  });

  it('shows the identity (public key, provider id, path), never the secret; enroll is an alias', async () => {
    const key = join(dir, 'id', 'identity.key');
    const path = join(dir, 'id.toml');
    await writeFile(path, `[identity]\nkey_path = "${key}"\n`);
    const out = await cli(['identity', '--config', path]);
    expect(out.code).toBe(0);
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    const secret = /secret: (.*)/.exec(await readFile(key, 'utf8'))![1]!;
    expect(out.stdout).toContain('public key');
    expect(out.stdout).toContain(key);
    expect(out.stdout).not.toContain(secret);
    const json = JSON.parse((await cli(['enroll', '--config', path, '--json'])).stdout);
    expect(json).toMatchObject({ file: key, provider_id: null, new: false });
    expect(JSON.stringify(json)).not.toContain(secret);

    // A provider id an older agent took from its coordinator unchecked: shown folded, never raw.
    const text = await readFile(key, 'utf8');
    await writeFile(
      key,
      text.replace('-----END', 'provider_id: prov\u001b]0;owned\u0007\u001b[2J\u202e1\n-----END'),
    );
    const shown = await cli(['identity', '--config', path]);
    expect(shown.code).toBe(0);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters that must not pass.
    expect(shown.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(shown.stdout).toContain('provider id  prov ]0;owned [2J 1');
  });
});

describe('usepod-agent run', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('serves jobs until SIGTERM, then exits 0', async () => {
    const coordinator = await TestCoordinator.start();
    const engine = await new VllmEmulator().start();
    try {
      const path = join(dir, 'run.toml');
      await writeFile(
        path,
        `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'run.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
      );
      child = spawn(process.execPath, [BIN, 'run', '--config', path, '--allow-insecure'], { env, cwd: dir });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
      const session = await coordinator.firstAuthenticated(15_000);
      await session.capabilities();
      const done = await session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done();
      expect(done.type).toBe('job_done');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toMatch(/INFO {2}agent agent started .*fingerprint=ed25519:/);
      expect(stderr).toMatch(/authenticated provider_id=prov_1/);
      expect(stderr).toMatch(/INFO {2}job done job=/);
      expect(stderr).toMatch(/coordinator connection is not encrypted/);
    } finally {
      await engine.close();
      await coordinator.close();
    }
  });

  it('drains on SIGTERM: the job in flight finishes, then exit 0; a second signal stops at once', async () => {
    const coordinator = await TestCoordinator.start();
    const engine = await new VllmEmulator({ tokenDelayMs: 20 }).start();
    try {
      const path = join(dir, 'drain.toml');
      await writeFile(
        path,
        `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'drain.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
      );
      const start = async () => {
        const c = spawn(process.execPath, [BIN, 'run', '--config', path, '--allow-insecure'], {
          env,
          cwd: dir,
        });
        const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
        const session = await coordinator.nextAuthenticated(15_000);
        await session.capabilities();
        return { c, exited, session };
      };
      // First: a job in flight completes during the drain.
      const a = await start();
      const job = a.session.dispatch({
        model_id: 'Qwen/Qwen3-14B',
        request: { messages: [], max_tokens: 15 },
      });
      await job.firstChunk();
      let errs = '';
      a.c.stderr!.on('data', (d: Buffer) => {
        errs += d.toString();
      });
      a.c.kill('SIGTERM');
      const d = await job.done().catch((e: unknown) => {
        throw new Error(`${String(e)}\n${errs}`);
      });
      expect(d.type).toBe('job_done');
      expect(await a.exited).toBe(0);
      expect((await a.session.closed).code).toBe(1000);
      // Second: a hanging job would hold the drain for 30 s; the second signal ends it now.
      engine.behave({ kind: 'hang-after-first' });
      const b = await start();
      const stuck = b.session.dispatch({ model_id: 'Qwen/Qwen3-14B' });
      await stuck.firstChunk();
      // Signals of one kind do not queue: send the second once the first was handled.
      const draining = new Promise<void>((resolve) => {
        let seen = '';
        b.c.stderr!.on('data', (d: Buffer) => {
          seen += d.toString();
          if (seen.includes('stopping: draining')) resolve();
        });
      });
      b.c.kill('SIGTERM');
      await draining;
      b.c.kill('SIGTERM');
      expect(await b.exited).toBe(143);
    } finally {
      await engine.close();
      await coordinator.close();
    }
  });
});

describe('usepod-agent dashboard --open on a full disk', () => {
  it('says the page could not be written and leaves the printed address to open: no bare ENOSPC, no stray file', async (ctx) => {
    // A real full disk: a 64 KiB tmpfs (mounting needs root; elsewhere the test is skipped).
    const disk = await mkdtemp(join(tmpdir(), 'usepod-dash-full-'));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0) {
      await rm(disk, { recursive: true, force: true });
      ctx.skip('no tmpfs could be mounted here (needs root)');
    }
    try {
      const token = 'a'.repeat(43);
      await writeFile(join(disk, 'status.token'), `${token}\n`, { mode: 0o600 });
      await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
      await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
      const path = join(dir, 'dash-full.toml');
      await writeFile(
        path,
        `[identity]\nkey_path = "${join(disk, 'identity.key')}"\n[observability]\nprometheus_addr = "127.0.0.1:9"\n`,
      );
      const out = await cli(['dashboard', '--open', '--config', path]);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      expect(out.stdout).toBe(
        `http://127.0.0.1:9/#token=${token}\ncould not write ${join(disk, 'dashboard.html')} for the browser (ENOSPC): open the address above in a browser\n`,
      );
      expect((await readdir(disk)).sort()).toEqual(['fill', 'fill2', 'status.token']);
    } finally {
      spawnSync('umount', [disk]);
      await rm(disk, { recursive: true, force: true });
    }
  });
});
