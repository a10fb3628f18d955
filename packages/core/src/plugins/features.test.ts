import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createAgent } from '../agent/agent.js';
import { loadConfig } from '../config/load.js';
import { silentLogger } from '../observability/log.js';
import { type AgentPlugin, definePlugin } from './plugin.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function configFile(text: string) {
  const dir = await mkdtemp(join(tmpdir(), 'usepod-features-'));
  dirs.push(dir);
  const file = join(dir, 'agent.toml');
  await writeFile(file, text);
  return (await loadConfig({ path: file })).config;
}

const sectionPlugin = (name: string, section: string): AgentPlugin => ({
  name,
  apiVersion: 1,
  apply(_hooks, ctx) {
    ctx.section(section, z.strictObject({ level: z.number().int().max(10) }));
  },
});

const load = (config: Awaited<ReturnType<typeof configFile>>, plugins: AgentPlugin[]) =>
  createAgent({ config, plugins, defaultPlugins: false, logger: silentLogger, pluginSearchRoots: [] }).load();

describe('sections resolve to plugins', () => {
  it('a section a plugin claims is parsed by its schema; a mistake is the config’s, at file:line:column', async () => {
    const config = await configFile('[limits]\nmax_concurrent = 2\n\n[heat]\nlevel = 11\n');
    await expect(load(config, [sectionPlugin('heat', 'heat')])).rejects.toThrow(
      /agent\.toml:5:\d+: heat\.level/,
    );
    await expect(
      load(await configFile('[heat]\nlevel = 3\n'), [sectionPlugin('heat', 'heat')]),
    ).resolves.toBeUndefined();
  });

  it('a section no installed plugin claims is one line naming the package to install, at its line', async () => {
    const config = await configFile('[limits]\nmax_concurrent = 2\n\n[heat]\nlevel = 3\n');
    const err = await load(config, []).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('USEPOD_PLUGIN_NOT_FOUND');
    expect(err?.message).toMatch(
      /agent\.toml:4:\d+: \[heat\] is not claimed by any installed plugin; install usepod-agent-plugin-heat/,
    );
    expect(err?.message.split('\n')).toHaveLength(1);
  });

  it.skipIf(process.platform === 'win32')(
    'the file replaced after loading (a FIFO, a file over the bound) is not read again: the mistake names it, no line',
    async () => {
      const config = await configFile('[limits]\nmax_concurrent = 2\n\n[heat]\nlevel = 3\n');
      const file = config.source!;
      const message = () =>
        load(config, []).then(
          () => '',
          (e: Error) => e.message,
        );
      // A FIFO nobody writes into: a blocking open would hold the agent's start (and its event loop) for good.
      await rm(file);
      expect(spawnSync('mkfifo', [file]).status).toBe(0);
      expect(await message()).toMatch(/agent\.toml: \[heat\] is not claimed by any installed plugin/);
      // Over MAX_CONFIG_BYTES: not read whole (the key would be found at line 4 if it were).
      await rm(file);
      await writeFile(
        file,
        `[limits]\nmax_concurrent = 2\n\n[heat]\nlevel = 3\n${'#'.repeat(1024 * 1024)}\n`,
      );
      expect(await message()).toMatch(/agent\.toml: \[heat\] is not claimed by any installed plugin/);
    },
  );

  it.skipIf(process.platform === 'win32')(
    'an embedder’s config whose source is a FIFO: the mistake names it, no hang',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'usepod-features-'));
      dirs.push(dir);
      const fifo = join(dir, 'agent.toml');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const config = { source: fifo, heat: { level: 3 } } as unknown as Awaited<
        ReturnType<typeof configFile>
      >;
      await expect(load(config, [])).rejects.toThrow(
        /agent\.toml: \[heat\] is not claimed by any installed plugin/,
      );
    },
  );

  it('two plugins claiming one section, or a plugin claiming a core section, are refused by name', async () => {
    const config = await configFile('[heat]\nlevel = 1\n');
    await expect(load(config, [sectionPlugin('a', 'heat'), sectionPlugin('b', 'heat')])).rejects.toThrow(
      /plugins "a" and "b" both claim \[heat\]/,
    );
    await expect(load(config, [sectionPlugin('c', 'limits')])).rejects.toThrow(
      /claimed \[limits\], which core reads/,
    );
  });

  it('one journal per agent; a plugin applied by default yields to one given', async () => {
    const journal = (name: string): AgentPlugin => ({
      name,
      apiVersion: 1,
      apply: (_h, ctx) => void ctx.provideJournal({ write: () => {} }),
    });
    await expect(load(await configFile(''), [journal('a'), journal('b')])).rejects.toThrow(
      /both provide the job journal/,
    );
  });
});

describe('a plugin’s metrics and status section', () => {
  it('reach /metrics and /status; hostile label values are folded, a throwing section shows its error', async () => {
    const agent = createAgent({
      config: {},
      defaultPlugins: false,
      logger: silentLogger,
      plugins: [
        definePlugin(() => ({
          name: 'gauges',
          apiVersion: 1,
          apply(_hooks, ctx) {
            const g = ctx.metrics.gauge('usepod_agent_test_temperature', 'a test gauge', ['gpu']);
            g.set(71, { gpu: 'RTX\u001b]0;owned\u0007' });
            ctx.statusSection('fine', () => ({ ok: true }));
            ctx.statusSection('broken', () => {
              throw new Error('no');
            });
          },
        })),
      ],
    });
    await agent.load();
    const text = await agent.metricsText();
    const line = text.split('\n').find((l) => l.startsWith('usepod_agent_test_temperature{'));
    expect(line).toMatch(/^usepod_agent_test_temperature\{gpu="RTX[^"]*"\} 71$/);
    expect(line).not.toContain('\u001b');
    expect(line).not.toContain('\u0007');
    expect(agent.status().sections).toEqual({ fine: { ok: true }, broken: { error: 'no' } });
  });
});

describe('plugins’ doctor checks', () => {
  it('one that hangs, throws anything or answers junk is a warning line in its place; the others are kept', async () => {
    // A check waiting on a local service that accepts and never answers.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    const check = (name: string, fn: () => unknown): AgentPlugin => ({
      name,
      apiVersion: 1,
      apply: (_h, ctx) => ctx.doctorCheck(name, fn as never),
    });
    const agent = createAgent({
      config: {},
      defaultPlugins: false,
      logger: silentLogger,
      timing: { doctorCheckMs: 300 },
      plugins: [
        check('hangs', async () => {
          await fetch(`http://127.0.0.1:${port}/`);
          return [];
        }),
        check('junk', () => [{ name: 'junk', detail: 'no level' }]),
        check('nothing', () => undefined),
        check('throws', () => {
          throw {
            toString() {
              throw new Error('again');
            },
          };
        }),
        check('fine', () => [{ name: 'fine', level: 'ok', detail: 'all good' }]),
      ],
    });
    try {
      const started = Date.now();
      const found = await agent.doctor({ engineCapacity: undefined });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(found).toEqual([
        { name: 'hangs', level: 'warn', detail: 'the check of plugin "hangs" gave no answer in 0.3 s' },
        { name: 'junk', level: 'warn', detail: 'the check of plugin "junk" gave no list of findings' },
        { name: 'nothing', level: 'warn', detail: 'the check of plugin "nothing" gave no list of findings' },
        {
          name: 'throws',
          level: 'warn',
          detail: 'the check of plugin "throws" failed: an unprintable error',
        },
        { name: 'fine', level: 'ok', detail: 'all good' },
      ]);
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });
});
