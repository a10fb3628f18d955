import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, homeEnv, runAgent, type Scratch, scratch } from './cli.js';
import { freePort } from './registry.js';

/**
 * Follows the feature plugin of docs/plugins.md ("Writing a feature plugin") word for word: its
 * `battery/` files become a package outside the repository, which must build, be linked into the CLI,
 * claim its section, hold a pause while a (fake) battery discharges, show in status and doctor, and add
 * its own command to the CLI.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

function sh(cmd: string, args: string[], cwd: string) {
  return new Promise<{ code: number; out: string }>((resolve) =>
    execFile(cmd, args, { cwd }, (err, so, se) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: so + se }),
    ),
  );
}

/** A power supply folder as Linux lays it out: one battery, one mains adapter. */
async function powerSupply(dir: string, status: string, capacity: number): Promise<void> {
  await mkdir(join(dir, 'BAT0'), { recursive: true });
  await mkdir(join(dir, 'AC'), { recursive: true });
  await writeFile(join(dir, 'BAT0', 'type'), 'Battery\n');
  await writeFile(join(dir, 'BAT0', 'status'), `${status}\n`);
  await writeFile(join(dir, 'BAT0', 'capacity'), `${capacity}\n`);
  await writeFile(join(dir, 'AC', 'type'), 'Mains\n');
}

describe('docs/plugins.md, the feature plugin', () => {
  let s: Scratch | undefined;
  cleanup.push(async () => s?.close());

  it('builds outside the repository, claims [battery], holds a pause on battery and shows in status and doctor', async () => {
    const doc = await readFile(join(ROOT, 'docs/plugins.md'), 'utf8');
    const files = [...doc.matchAll(/```\w+ file=battery\/(\S+)\n([\s\S]*?)```/g)].map((m) => ({
      path: m[1]!,
      text: m[2]!,
    }));
    expect(files.map((f) => f.path)).toEqual([
      'package.json',
      'tsconfig.json',
      'src/index.ts',
      'src/power.ts',
      'src/commands/battery.ts',
    ]);
    const pkg = await mkdtemp(join(tmpdir(), 'usepod-battery-plugin-'));
    cleanup.push(() => rm(pkg, { recursive: true, force: true }));
    // `npm install` stands for a link to this workspace's node_modules (no registry; core built here).
    await symlink(join(ROOT, 'node_modules'), join(pkg, 'node_modules'), 'dir');
    for (const f of files) {
      await mkdir(dirname(join(pkg, f.path)), { recursive: true });
      await writeFile(join(pkg, f.path), f.text);
    }
    const build = await sh(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], pkg);
    expect(build.out).toBe('');
    expect(build.code).toBe(0);

    s = await scratch('usepod-battery-');
    const env = homeEnv(s.dir, { OCLIF_DISABLE_LINKED_ESM_WARNING: '1' });
    const run = (args: string[]) => cli(args, { env, cwd: s!.dir });
    expect((await run(['plugins', 'link', pkg, '--no-install'])).code).toBe(0);

    const power = join(s.dir, 'power_supply');
    await powerSupply(power, 'Charging', 90);
    const port = await freePort();
    const cfg = join(s.dir, 'agent.toml');
    await writeFile(
      cfg,
      [
        `[coordinator]\nurl = "${s.coordinator.url}"`,
        `[identity]\nkey_path = "${join(s.dir, 'id', 'identity.key')}"`,
        `[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"`,
        `[observability]\nprometheus_addr = "127.0.0.1:${port}"`,
        `[battery]\npath = "${power}"\nmin_percent = 50\npoll_s = 0.1`,
      ].join('\n'),
    );
    const validate = await run(['validate', '--config', cfg, '--allow-insecure']);
    expect(validate.stdout).toMatch(/\[battery\]\s+\[usepod-agent-plugin-battery\]/);
    // A mistake in the section is the config's, at its line.
    const bad = join(s.dir, 'bad.toml');
    await writeFile(bad, '[battery]\nmin_percent = 150\n');
    const refused = await run(['validate', '--config', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/bad\.toml:2:\d+: battery\.min_percent/);

    const a = await runAgent(cfg, { env, cwd: s.dir, coordinator: s.coordinator, children: s.children });
    expect((a.caps.models as unknown[]).length).toBe(1);
    // Unplugged, at 31%: the models leave.
    const gone = a.session.nextFrame('capabilities');
    await powerSupply(power, 'Discharging', 31);
    expect((await gone).models).toEqual([]);
    const status = JSON.parse((await run(['status', '--json', '--addr', `127.0.0.1:${port}`])).stdout) as {
      holds: { by: string; reason: string }[];
      sections: Record<string, unknown>;
    };
    expect(status.holds).toEqual([
      expect.objectContaining({ by: 'battery', reason: 'on battery (31% charged)' }),
    ]);
    expect(status.sections.battery).toEqual({ on_battery: true, percent: 31 });
    expect((await run(['status', '--addr', `127.0.0.1:${port}`])).stdout).toMatch(
      /PAUSED\s+by battery: on battery \(31% charged\)/,
    );
    const doctor = await run(['doctor', '--config', cfg, '--allow-insecure', '--json']);
    expect(JSON.parse(doctor.stdout).checks).toContainEqual(
      expect.objectContaining({ name: 'battery', level: 'ok', detail: 'on battery, 31% charged' }),
    );
    // The plugin's own command, carried by its package (an oclif plugin), is the CLI's now.
    const own = await run(['battery', '--path', power]);
    expect(own.stdout.trim()).toBe('on battery, 31% charged');
    // Plugged in again: back.
    const back = a.session.nextFrame('capabilities');
    await powerSupply(power, 'Charging', 32);
    expect(((await back).models as unknown[]).length).toBe(1);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 120_000);
});
