import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgent } from '../agent/agent.js';
import type { Logger } from '../observability/log.js';
import { silentLogger } from '../observability/log.js';
import type { AgentPlugin } from './plugin.js';

/**
 * A plugin is third-party code run at start: installed packages (real folders under node_modules) whose
 * module throws, never finishes its import, or whose apply() throws or hangs are one line naming them,
 * within the bound, never the agent's end or a start that waits for good.
 */
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A folder with node_modules/<name> holding `source` as the package's module, declaring kind "x". */
async function installed(packages: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'usepod-bounded-'));
  dirs.push(root);
  for (const [name, source] of Object.entries(packages)) {
    const dir = join(root, 'node_modules', name);
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        name,
        version: '1.0.0',
        type: 'module',
        main: 'index.js',
        'usepod-agent': { kinds: ['x'] },
      }),
    );
    await writeFile(join(dir, 'index.js'), source);
  }
  return root;
}

const X = { backends: [{ kind: 'x', url: 'http://127.0.0.1:9' }] };

async function loadFailure(root: string, plugins: AgentPlugin[] = []) {
  const agent = createAgent({
    config: X,
    plugins,
    pluginSearchRoots: [root],
    defaultPlugins: false,
    logger: silentLogger,
    timing: { pluginLoadMs: 300 },
  });
  return agent.load().then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
}

const plugin = (apply: string) =>
  `export default { name: 'usepod-agent-plugin-x', apiVersion: 1, kinds: ['x'], ${apply} };\n`;

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202e]/;

describe('a plugin that fails as it loads', () => {
  it('throwing at import (escapes, a megabyte, lines) is one folded line naming it', async () => {
    const root = await installed({
      'usepod-agent-plugin-x': `throw new Error('\\x1b]0;owned\\x07\\x1b[2J\\u202e' + 'A'.repeat(1 << 20) + '\\nsecond');\n`,
    });
    const err = await loadFailure(root);
    expect(err?.code).toBe('USEPOD_PLUGIN_LOAD_FAILED');
    expect(err?.message).toMatch(/^plugin "usepod-agent-plugin-x" threw in its import: +\]0;owned \[2J A+…$/);
    expect(err?.message).not.toMatch(CONTROL);
    expect(err!.message.length).toBeLessThan(400);
  });

  it('whose import never finishes is said within the bound, not waited on for good', async () => {
    const root = await installed({
      'usepod-agent-plugin-x': `await new Promise(() => {});\n${plugin('apply() {}')}`,
    });
    const err = await loadFailure(root);
    expect(err?.code).toBe('USEPOD_PLUGIN_LOAD_FAILED');
    expect(err?.message).toBe('plugin "usepod-agent-plugin-x" did not finish its import within 300 ms');
  });

  it('whose apply() never resolves, or throws, is named with apply()', async () => {
    let root = await installed({
      'usepod-agent-plugin-x': plugin('apply() { return new Promise(() => {}); }'),
    });
    expect((await loadFailure(root))?.message).toBe(
      'plugin "usepod-agent-plugin-x" did not finish apply() within 300 ms',
    );
    root = await installed({
      'usepod-agent-plugin-x': plugin("apply() { throw new Error('no\\x1b[31m'); }"),
    });
    const err = await loadFailure(root);
    expect(err?.code).toBe('USEPOD_PLUGIN_LOAD_FAILED');
    expect(err?.message).toBe('plugin "usepod-agent-plugin-x" threw in apply(): no [31m');
  });

  it('a name, kinds or sections that are no names are refused in one line (a listing shows them)', async () => {
    for (const fields of [
      `name: 'usepod-agent-plugin-x\\x1b[2J', apiVersion: 1, kinds: ['x']`,
      `name: 'usepod-agent-plugin-x', apiVersion: 1, kinds: 5`,
      `name: 'usepod-agent-plugin-x', apiVersion: 1, kinds: ['x'], sections: ['a\\x07']`,
    ]) {
      const root = await installed({
        'usepod-agent-plugin-x': `export default { ${fields}, apply() {} };\n`,
      });
      const err = await loadFailure(root);
      expect(err?.code, fields).toBe('USEPOD_PLUGIN_INVALID');
      expect(err?.message).toMatch(/^usepod-agent-plugin-x is not a usepod-agent plugin: its "(name|kinds)"/);
      expect(err?.message).not.toMatch(CONTROL);
    }
  });
});

describe('what a plugin registers for a kind', () => {
  it('a kind two plugins register is said; the first keeps it', async () => {
    const warned: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (m) => warned.push(m), child: () => logger };
    const claim = (name: string): AgentPlugin => ({
      name,
      apiVersion: 1,
      kinds: ['x'],
      apply(_h, ctx) {
        ctx.registerBackend('x', { title: name, create: () => ({}) as never });
      },
    });
    const agent = createAgent({
      config: X,
      plugins: [claim('first'), claim('second')],
      pluginSearchRoots: [],
      defaultPlugins: false,
      logger,
    });
    await agent.load();
    expect(agent.kinds.get('x')?.plugin).toBe('first');
    expect(warned).toEqual(['kind "x" is already provided by first; this plugin\'s is not used']);
  });

  it('its title and naming are folded, its ports and priority checked', async () => {
    const odd: AgentPlugin = {
      name: 'odd',
      apiVersion: 1,
      apply(_h, ctx) {
        ctx.registerBackend('x', {
          title: '\x1b[31mX\x1b]0;t\x07',
          modelNaming: 'y'.repeat(5000),
          defaultPorts: [8000, 0, 70000, 1.5, '80' as never],
          priority: Number.NaN,
          processNames: ['', 'x-server', 'a\x1b'],
          create: () => ({}) as never,
        });
      },
    };
    const agent = createAgent({
      config: X,
      plugins: [odd],
      pluginSearchRoots: [],
      defaultPlugins: false,
      logger: silentLogger,
    });
    await agent.load();
    const k = agent.kinds.get('x')!;
    expect(k.title).not.toMatch(CONTROL);
    expect(k.modelNaming!.length).toBeLessThanOrEqual(301);
    expect(k.defaultPorts).toEqual([8000]);
    expect(k.priority).toBe(100);
    expect(k.processNames).toEqual(['x-server']);
  });
});
