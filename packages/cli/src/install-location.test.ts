import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installLocation } from './install-location.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tree(...paths: string[]): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'usepod-install-'));
  dirs.push(base);
  for (const p of paths) {
    if (p.endsWith('/')) await mkdir(join(base, p), { recursive: true });
    else await writeFile(join(base, p), '{}');
  }
  return base;
}

describe('installLocation: the install `upgrade` updates (issue 17)', () => {
  it('finds the prefix of a global install, nvm-style or in a home folder', async () => {
    const base = await tree('prefix/lib/node_modules/usepod-agent/');
    expect(installLocation(join(base, 'prefix/lib/node_modules/usepod-agent'), 'linux')).toEqual({
      kind: 'global',
      prefix: join(base, 'prefix'),
    });
    // Windows puts global packages straight under the prefix.
    const win = await tree('npm/node_modules/usepod-agent/');
    expect(installLocation(join(win, 'npm/node_modules/usepod-agent'), 'win32')).toEqual({
      kind: 'global',
      prefix: join(win, 'npm'),
    });
  });

  it('follows the symlink npm puts in the prefix bin to the real folder', async () => {
    const base = await tree('prefix/lib/node_modules/usepod-agent/', 'elsewhere/');
    await symlink(join(base, 'prefix/lib/node_modules/usepod-agent'), join(base, 'elsewhere/agent'));
    expect(installLocation(join(base, 'elsewhere/agent'), 'linux')).toMatchObject({ kind: 'global' });
  });

  it('tells a project dependency (its folder has a package.json), npx and a checkout apart', async () => {
    const base = await tree('app/node_modules/usepod-agent/', 'app/package.json');
    expect(installLocation(join(base, 'app/node_modules/usepod-agent'), 'linux')).toEqual({
      kind: 'project',
      project: join(base, 'app'),
    });
    const npx = await tree('.npm/_npx/0a1b/node_modules/usepod-agent/');
    expect(installLocation(join(npx, '.npm/_npx/0a1b/node_modules/usepod-agent'), 'linux')).toEqual({
      kind: 'npx',
    });
    const checkout = await tree('usepod-agent/packages/cli/');
    expect(installLocation(join(checkout, 'usepod-agent/packages/cli'), 'linux')).toEqual({
      kind: 'checkout',
      root: join(checkout, 'usepod-agent/packages/cli'),
    });
  });
});
