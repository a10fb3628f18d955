import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `plugins install ./x.tgz` was taken for the GitHub slug `./x.tgz` and failed after 73 s of git (issue 28):
 * a local path is installed as the file or folder it names, with no network (npm runs offline here).
 */
const BIN = fileURLToPath(new URL('../../../bin/run.js', import.meta.url));
let home: string;
let env: NodeJS.ProcessEnv;

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, { env, cwd: home }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    ),
  );
}
const cli = (args: string[]) => run(process.execPath, [BIN, ...args]);

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'usepod-install-'));
  env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_DATA_HOME: join(home, 'data'),
    XDG_CONFIG_HOME: join(home, 'cfg'),
    XDG_CACHE_HOME: join(home, 'cache'),
    OCLIF_DISABLE_LINKED_ESM_WARNING: '1',
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    npm_config_cache: join(home, 'npm-cache'),
  };
  const pkg = join(home, 'tiny');
  await mkdir(pkg);
  await writeFile(
    join(pkg, 'package.json'),
    JSON.stringify({
      name: 'usepod-agent-plugin-tiny',
      version: '1.2.3',
      type: 'module',
      exports: { '.': './index.js', './package.json': './package.json' },
      oclif: {},
      'usepod-agent': { kinds: ['tiny'] },
    }),
  );
  await writeFile(
    join(pkg, 'index.js'),
    "export default { name: 'usepod-agent-plugin-tiny', apiVersion: 1, kinds: ['tiny'], apply() {} };\n",
  );
  const packed = await run('npm', ['pack', './tiny', '--pack-destination', home]);
  expect(packed.code, packed.err).toBe(0);
}, 60_000);
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('plugins install of a local path', () => {
  it('installs a packed plugin named by ./x.tgz, offline, and lists it', async () => {
    const installed = await cli(['plugins', 'install', './usepod-agent-plugin-tiny-1.2.3.tgz']);
    expect(installed.err).not.toMatch(/github|git clone|\n\s+at /i);
    expect(installed.code, installed.err).toBe(0);
    expect((await cli(['plugins'])).out).toMatch(/usepod-agent-plugin-tiny\s+1\.2\.3\s+kinds: tiny/);
    expect((await cli(['plugins', 'uninstall', 'usepod-agent-plugin-tiny'])).code).toBe(0);
  }, 60_000);

  it('says in one line that a local path does not exist', async () => {
    const missing = await cli(['plugins', 'install', './nope-1.0.0.tgz']);
    expect(missing.code).toBe(2);
    expect(missing.err.trimEnd().split('\n')[0]).toBe(
      `usepod-agent: ${join(home, 'nope-1.0.0.tgz')} does not exist (USEPOD_USAGE)`,
    );
  }, 60_000);
});
