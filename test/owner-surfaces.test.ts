import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, homeEnv } from './cli.js';

/**
 * The owner's surfaces as attackers see them (issue 28, point 9): another local user, a browser page, a
 * broken engine or plugin, a hostile environment. Each test attacks a real process, socket or file and
 * failed before the fix named in its row.
 *
 * | attack                                                        | surface          | before                                        | now                                                    |
 * | ------------------------------------------------------------- | ---------------- | --------------------------------------------- | ------------------------------------------------------ |
 * | `.usepodrc.cjs` planted by another user in the cwd            | config lookup    | executed (twice) by any command run there     | refused unread: USEPOD_CONFIG_UNSAFE, names the file   |
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function scratch(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe('a config file another local user planted in the current folder', () => {
  const NOBODY = 65534;
  const canChown = process.getuid?.() === 0;

  it.runIf(canChown)('a .usepodrc.cjs owned by another user is never executed', async () => {
    const home = await scratch('usepod-home-');
    const shared = await scratch('usepod-shared-');
    await chmod(shared, 0o1777);
    const marker = join(shared, 'pwned');
    const planted = join(shared, '.usepodrc.cjs');
    await writeFile(
      planted,
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); module.exports = {};\n`,
    );
    await chown(planted, NOBODY, NOBODY);
    const r = await cli(['validate'], { cwd: shared, env: homeEnv(home) });
    expect(await exists(marker)).toBe(false);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('USEPOD_CONFIG_UNSAFE');
    expect(r.stderr).toContain(planted);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("an agent.toml in a folder anyone may write (not sticky) is refused; one in the owner's folder is read", async () => {
    const home = await scratch('usepod-home-');
    const open = await scratch('usepod-open-');
    await chmod(open, 0o777);
    const toml =
      'backends = [{ kind = "vllm", url = "http://127.0.0.1:1" }]\n[coordinator]\nurl = "wss://evil.example"\n';
    await writeFile(join(open, 'agent.toml'), toml);
    const r = await cli(['validate'], { cwd: open, env: homeEnv(home) });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('USEPOD_CONFIG_UNSAFE');
    const mine = await scratch('usepod-mine-');
    await writeFile(join(mine, 'agent.toml'), toml);
    const ok = await cli(['validate'], { cwd: mine, env: homeEnv(home) });
    expect(ok.stderr).not.toContain('USEPOD_CONFIG_UNSAFE');
    expect(`${ok.stdout}${ok.stderr}`).toContain(join(mine, 'agent.toml'));
  });
});
