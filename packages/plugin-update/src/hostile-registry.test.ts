import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@usepod-agent/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateSection } from './config.js';
import { files } from './state.js';
import { Updater } from './updater.js';

/**
 * A registry on 127.0.0.1 that answers `npm view` at once and never answers a plugin's packument, and
 * registry addresses that carry credentials.
 */
let server: Server;
let url: string;
let work: string;
const askedFor: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    askedFor.push(req.url ?? '');
    if (req.url?.replace(/\/+$/, '') === '/usepod-agent') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          name: 'usepod-agent',
          'dist-tags': { latest: '9.9.9' },
          versions: { '9.9.9': { name: 'usepod-agent', version: '9.9.9' } },
          time: { '9.9.9': new Date(Date.now() - 3_600_000).toISOString() },
        }),
      );
    }
    // Anything else (the plugin's packument): headers never come.
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  work = await mkdtemp(join(tmpdir(), 'usepod-hostile-registry-'));
  // An installed plugin that 9.9.9 strands: its compatible release is looked up in the registry.
  const plugin = join(work, 'plugins', 'node_modules', 'usepod-agent-plugin-x');
  await mkdir(plugin, { recursive: true });
  await writeFile(
    join(work, 'plugins', 'package.json'),
    JSON.stringify({ oclif: { plugins: [{ name: 'usepod-agent-plugin-x', type: 'user' }] } }),
  );
  await writeFile(
    join(plugin, 'package.json'),
    JSON.stringify({
      name: 'usepod-agent-plugin-x',
      version: '1.0.0',
      peerDependencies: { '@usepod-agent/core': '^0.4.0' },
    }),
  );
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await rm(work, { recursive: true, force: true });
});

describe('a registry that hangs', () => {
  it('a plugin look-up under way ends when the agent stops, not 30 s later, and nothing is written', async () => {
    const stopping = new AbortController();
    const dir = join(work, 'update');
    const u = new Updater({
      config: updateSection.parse({ registry: url }),
      dir,
      running: '0.4.0',
      providerId: () => 'prov_1',
      log: silentLogger,
      pluginRoot: join(work, 'plugins'),
      signal: stopping.signal,
    });
    const checked = u.check();
    for (let i = 0; i < 400 && !askedFor.includes('/usepod-agent-plugin-x'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(askedFor).toContain('/usepod-agent-plugin-x');
    const stoppedAt = Date.now();
    stopping.abort();
    await checked;
    // The close hook waits for the check: the agent's stop is not held by the registry.
    expect(Date.now() - stoppedAt).toBeLessThan(2_000);
    expect(existsSync(files(dir).state)).toBe(false);
  });
});

describe('a registry address with credentials', () => {
  it('is refused in [update] registry, saying where they belong (npm’s command line and errors show it)', () => {
    const r = updateSection.safeParse({ registry: 'https://ci:s3cret-token@registry.example.com/' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toBe(
      'an address without user:password@ (put the registry’s credentials in .npmrc)',
    );
    expect(updateSection.parse({ registry: 'https://registry.example.com/npm/' }).registry).toBe(
      'https://registry.example.com/npm/',
    );
  });
});
