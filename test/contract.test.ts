import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAgent, definePlugin, silentLogger } from '@usepod-agent/core';
import llamacppPlugin from '@usepod-agent/plugin-llamacpp';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { validateConfig } from '../packages/core/src/config/validate.js';
import { PluginHost } from '../packages/core/src/plugins/host.js';
import { checkBackends, registeredKind } from '../packages/core/src/plugins/kinds.js';

/**
 * Plugin contract 1.0 (issue 16): a kind is described by its plugin, fully; a plugin built for another
 * contract is refused; the public surfaces are pinned; core and the CLI name no engine.
 */
const root = fileURLToPath(new URL('..', import.meta.url));

describe('kind descriptors', () => {
  it('a typo in options is an error naming the key and the file', async () => {
    const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
    await host.apply(llamacppPlugin());
    const config = validateConfig(
      { backends: [{ kind: 'llamacpp', url: 'http://127.0.0.1:8080', options: { include_unloded: true } }] },
      { source: '/etc/usepod-agent/agent.toml' },
    );
    expect(() => checkBackends(config, host.kinds)).toThrow(
      /^\/etc\/usepod-agent\/agent\.toml: backends\[0\]\.options: Unrecognized key: "include_unloded"/,
    );
    const ok = validateConfig({
      backends: [{ kind: 'llamacpp', url: 'http://127.0.0.1:8080', options: { include_unloaded: true } }],
    });
    expect(checkBackends(ok, host.kinds)[0]!.options).toEqual({ include_unloaded: true });
  });

  it('what an entry requires, its default ports and its routing priority are the plugin word', async () => {
    const kind = registeredKind('remote-x', 'p', {
      create: () => {
        throw new Error('not created here');
      },
      requires: 'api_key',
      remote: true,
      defaultPorts: [7000],
      priority: 5,
      options: z.strictObject({ region: z.enum(['eu', 'us']).optional() }),
    });
    const kinds = new Map([['remote-x', kind]]);
    const needsKey = validateConfig({ backends: [{ kind: 'remote-x', url: 'https://api.example' }] });
    expect(() => checkBackends(needsKey, kinds)).toThrow(
      /backends\[0\]\.api_key_env: is required for kind "remote-x"/,
    );
    const badValue = validateConfig({
      backends: [{ kind: 'remote-x', api_key_env: 'X_KEY', options: { region: 'mars' } }],
    });
    expect(() => checkBackends(badValue, kinds)).toThrow(/backends\[0\]\.options\.region: /);
    expect(kind).toMatchObject({ requires: 'api_key', remote: true, defaultPorts: [7000], priority: 5 });
    // A plain factory still registers a kind, with defaults: needs a url, no options.
    const plain = registeredKind('plain', 'p', () => {
      throw new Error('not created here');
    });
    expect(plain).toMatchObject({ requires: 'url', remote: false, defaultPorts: [], priority: 100 });
    const withOptions = validateConfig({ backends: [{ kind: 'plain', url: 'http://h', options: { a: 1 } }] });
    expect(() => checkBackends(withOptions, new Map([['plain', plain]]))).toThrow(
      /options: kind "plain" takes no options/,
    );
  });

  it('run refuses a config whose options the kind does not take, in one line naming the key', async () => {
    const agent = createAgent({
      config: {
        coordinator: { url: 'ws://127.0.0.1:9/provider/connect' },
        identity: { key_path: '/nonexistent/identity.key' },
        backends: [{ kind: 'llamacpp', url: 'http://127.0.0.1:8080', options: { include_unloded: true } }],
        observability: { prometheus_addr: 'off' },
      },
      plugins: [llamacppPlugin],
      allowInsecure: true,
      logger: silentLogger,
    });
    await expect(agent.start()).rejects.toThrow(
      /backends\[0\]\.options: Unrecognized key: "include_unloded"/,
    );
  });
});

describe('the contract a plugin was built for', () => {
  const plugin = (over: Record<string, unknown>) =>
    definePlugin(() => ({ name: 'usepod-agent-plugin-future', apiVersion: 1, apply() {}, ...over }))();

  it('refuses a plugin for another plugin API, or whose core range this core is outside, in one line', async () => {
    const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
    await expect(host.apply(plugin({ apiVersion: 2 }))).rejects.toThrow(
      /^plugin "usepod-agent-plugin-future" \(usepod-agent-plugin-future\) was built for plugin API 2; this agent is @usepod-agent\/core 0\.4\.0 with plugin API 1/,
    );
    await expect(host.apply(plugin({ core: '^0.5.0' }))).rejects.toThrow(
      /was built for plugin API 1, core \^0\.5\.0;/,
    );
    await expect(host.apply(plugin({ core: '>=0.4.0 <0.5.0' }))).resolves.toBeUndefined();
  });

  it('first-party plugins state their API as a literal, never by importing the running core constant', () => {
    for (const dir of readdirSync(join(root, 'packages')).filter((d) => d.startsWith('plugin-'))) {
      const src = readFileSync(join(root, 'packages', dir, 'src', 'index.ts'), 'utf8');
      expect(src, dir).toMatch(/apiVersion: 1,/);
      expect(src, dir).not.toContain('PLUGIN_API_VERSION');
    }
  });
});

describe('who imports which surface (surface.test.ts in core pins their names)', () => {
  /** Every .ts file under `dir`, recursively. */
  const tsUnder = (dir: string) =>
    readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => /\.(ts|mjs)$/.test(f))
      .map((f) => join(dir, f));
  /** The core paths a file imports, statically or with import(). */
  const coreImports = (f: string) =>
    [...readFileSync(f, 'utf8').matchAll(/(?:from |import\()'(@usepod-agent\/core[^']*)'/g)].map((m) => m[1]);
  const plugins = readdirSync(join(root, 'packages')).filter((d) => d.startsWith('plugin-'));

  it('plugins, the testkit, the examples and the plugin guide import only "." and "./backend"', () => {
    const files = [
      ...tsUnder(join(root, 'packages', 'testkit', 'src')),
      ...plugins.flatMap((d) => tsUnder(join(root, 'packages', d, 'src'))),
      join(root, 'examples', 'custom-backend-plugin', 'src', 'index.ts'),
      join(root, 'examples', 'programmatic', 'src', 'index.ts'),
      join(root, 'docs', 'plugins.md'),
      join(root, 'docs', 'hooks.md'),
    ];
    for (const f of files) {
      for (const s of coreImports(f))
        expect(['@usepod-agent/core', '@usepod-agent/core/backend'], f).toContain(s);
    }
  });

  it('the CLI imports only ".", "./backend" and "./cli"', () => {
    const files = tsUnder(join(root, 'packages', 'cli', 'src'));
    expect(files.length).toBeGreaterThan(20);
    const seen = new Set(files.flatMap(coreImports));
    expect([...seen].sort()).toEqual([
      '@usepod-agent/core',
      '@usepod-agent/core/backend',
      '@usepod-agent/core/cli',
    ]);
  });

  it('nothing imports a path core does not export: there is no "./internal"', () => {
    const files = [
      ...tsUnder(join(root, 'test')),
      ...tsUnder(join(root, 'bench')),
      ...readdirSync(join(root, 'packages')).flatMap((d) => tsUnder(join(root, 'packages', d, 'src'))),
    ];
    const exported = ['@usepod-agent/core', '@usepod-agent/core/backend', '@usepod-agent/core/cli'];
    for (const f of files) for (const s of coreImports(f)) expect(exported, f).toContain(s);
  });
});

describe('core and the CLI know no engine by name', () => {
  it('no engine name in their sources, outside comments and tests', () => {
    const names =
      /\b(vllm|vLLM|ollama|Ollama|llamacpp|llama\.cpp|lmstudio|LM Studio|openrouter|OpenRouter|venice|Venice)\b/;
    const hits: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const p = join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) {
          readFileSync(p, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              const code = line.replace(/\/\/.*$/, '').replace(/^\s*(\*|\/\*\*?).*$/, '');
              if (names.test(code)) hits.push(`${p.slice(root.length)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    walk(join(root, 'packages', 'core', 'src'));
    walk(join(root, 'packages', 'cli', 'src'));
    expect(hits).toEqual([]);
  });
});

describe('the CLI refuses a plugin built for another contract', () => {
  it('plugins link and plugins install undo themselves; validate and run say so in one line', async () => {
    const { execFile } = await import('node:child_process');
    const { mkdir, mkdtemp, rm, writeFile, cp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const home = await mkdtemp(join(tmpdir(), 'usepod-contract-'));
    try {
      const pkg = join(home, 'future');
      await mkdir(pkg);
      await writeFile(
        join(pkg, 'package.json'),
        JSON.stringify({
          name: 'usepod-agent-plugin-future',
          version: '1.0.0',
          type: 'module',
          exports: { '.': './index.js', './package.json': './package.json' },
          oclif: {},
          'usepod-agent': { kinds: ['future'] },
        }),
      );
      await writeFile(
        join(pkg, 'index.js'),
        "export default { name: 'usepod-agent-plugin-future', apiVersion: 2, kinds: ['future'], apply() {} };\n",
      );
      const env = {
        PATH: process.env.PATH,
        HOME: home,
        XDG_DATA_HOME: join(home, 'data'),
        XDG_CONFIG_HOME: join(home, 'cfg'),
        XDG_CACHE_HOME: join(home, 'cache'),
        OCLIF_DISABLE_LINKED_ESM_WARNING: '1',
      };
      const bin = join(root, 'packages/cli/bin/run.js');
      const cli = (args: string[]) =>
        new Promise<{ code: number; out: string; err: string }>((resolve) =>
          execFile(process.execPath, [bin, ...args], { env, cwd: home }, (e, out, err) =>
            resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
          ),
        );
      const linked = await cli(['plugins', 'link', pkg, '--no-install']);
      expect(linked.code).toBe(2);
      const refusal = linked.err
        .trim()
        .split('\n')
        .filter((l) => l.includes('was built for'));
      expect(refusal).toHaveLength(1);
      expect(refusal[0]).toMatch(
        /plugin API 2; this agent is @usepod-agent\/core 0\.4\.0 with plugin API 1.*not kept/,
      );
      expect((await cli(['plugins'])).out).not.toContain('usepod-agent-plugin-future');
      // plugins install (a local package: no registry needed for one without dependencies) undoes the install.
      const installed = await cli(['plugins', 'install', `file:${pkg}`]);
      expect(installed.code).toBe(2);
      expect(installed.err.split('\n').filter((l) => l.includes('was built for'))).toHaveLength(1);
      expect(installed.err).toMatch(
        /plugin API 2; this agent is @usepod-agent\/core 0\.4\.0 with plugin API 1.*not kept/,
      );
      expect((await cli(['plugins'])).out).not.toContain('usepod-agent-plugin-future');
      // Installed by hand where plugins go: validate and run find it by kind and refuse it, one line each.
      await cp(pkg, join(home, 'data', 'usepod-agent', 'node_modules', 'usepod-agent-plugin-future'), {
        recursive: true,
      });
      const cfg = join(home, 'agent.toml');
      await writeFile(cfg, '[[backends]]\nkind = "future"\nurl = "http://127.0.0.1:9"\n');
      for (const args of [
        ['validate', '--config', cfg],
        ['run', '--config', cfg],
      ]) {
        const out = await cli(args);
        expect(out.code, args[0]).toBe(2);
        const [line, hint, ...rest] = out.err.trimEnd().split('\n');
        expect(line, args[0]).toMatch(/\(USEPOD_PLUGIN_API_MISMATCH\)$/);
        expect(hint, args[0]).toMatch(/^ {2}hint: /);
        expect(rest, args[0]).toEqual([]);
        expect(out.err).toMatch(/was built for plugin API 2/);
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }, 60_000);
});
