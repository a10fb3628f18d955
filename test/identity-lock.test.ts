import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestAgent, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';

/** One identity, one agent (issue 17): a lock next to the key, released on exit, recovered after a crash. */
const BIN = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('the identity lock', () => {
  it('refuses a second agent on the same key in one line naming the first, and frees the key at stop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-lock-'));
    const coordinator = await TestCoordinator.start();
    const engine = await new VllmEmulator().start();
    cleanup.push(async () => {
      await engine.close();
      await coordinator.close();
      await rm(dir, { recursive: true, force: true });
    });
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
    );
    const env = { PATH: process.env.PATH, HOME: dir, XDG_DATA_HOME: join(dir, 'data') };
    const first = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], { env });
    const exited = once(first, 'exit');
    cleanup.push(async () => {
      if (first.exitCode === null) first.kill('SIGKILL');
    });
    await coordinator.firstAuthenticated(15_000);
    const lock = JSON.parse(await readFile(join(dir, 'identity.key.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(first.pid);
    const second = await new Promise<{ code: number; err: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], { env }, (e, _o, err) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, err }),
      ),
    );
    expect(second.code).toBe(2);
    const [line, hint] = second.err.trimEnd().split('\n').slice(-2);
    expect(line).toMatch(
      new RegExp(
        `another agent \\(pid ${first.pid}, started .*\\) is running with identity .*\\(USEPOD_IDENTITY_IN_USE\\)$`,
      ),
    );
    expect(hint).toMatch(/^ {2}hint: /);
    // Only one agent ever authenticated.
    expect(coordinator.sessions.items).toHaveLength(1);
    first.kill('SIGTERM');
    await exited;
    await expect(readFile(join(dir, 'identity.key.lock'))).rejects.toThrow(/ENOENT/);
  }, 30_000);

  it('takes over a lock left by a crashed agent, and refuses a second agent in the same process', async () => {
    const t = await createTestAgent();
    cleanup.push(() => t.close());
    // A lock whose process is gone (this pid exited): left by a crash.
    const dead = spawn(process.execPath, ['-e', '0']);
    await once(dead, 'exit');
    await writeFile(
      `${t.identityPath}.lock`,
      JSON.stringify({ pid: dead.pid, host: hostname(), started: 'then' }),
    );
    expect((await t.start()).ok).toBe(true);
    const twin = await createTestAgent({
      coordinator: t.coordinator,
      config: { identity: { key_path: t.identityPath } },
    });
    cleanup.push(() => twin.close());
    const refused = await twin.start();
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.error.code).toBe('USEPOD_IDENTITY_IN_USE');
    await t.stop();
    // Once the first agent stopped, the key is free.
    const again = await createTestAgent({
      coordinator: t.coordinator,
      config: { identity: { key_path: t.identityPath } },
    });
    cleanup.push(() => again.close());
    expect((await again.start()).ok).toBe(true);
  });

  it('a lock that is no lock of the agent (a FIFO, a link to /dev/zero, a folder) is named in one line, never waited on or read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-lock-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const key = join(dir, 'identity.key');
    const cfg = join(dir, 'agent.toml');
    // The lock is refused before the coordinator is dialled: nothing listens at this address.
    await writeFile(
      cfg,
      `[coordinator]\nurl = "ws://127.0.0.1:9/provider/connect"\n[identity]\nkey_path = "${key}"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n[observability]\nprometheus_addr = "off"\n[ledger]\npath = "off"\n`,
    );
    const env = { PATH: process.env.PATH, HOME: dir, XDG_DATA_HOME: join(dir, 'data') };
    const lock = `${key}.lock`;
    const plant: [() => Promise<void>, RegExp][] = [
      // Nobody ever writes into it: a read waited for good, before the first log line.
      [async () => void spawnSync('mkfifo', [lock]), /is not a regular file \(a device, FIFO or socket\)/],
      // Followed and read whole, it grew the process to gigabytes.
      [() => symlink('/dev/zero', lock), /is a symbolic link/],
      [() => mkdir(lock), /is a folder, not a file/],
    ];
    for (const [make, why] of plant) {
      await rm(lock, { recursive: true, force: true });
      await make();
      // A run stuck on the lock (as before this was fixed) is killed, never left behind.
      const opts = { env, timeout: 8_000, killSignal: 'SIGKILL' as const };
      const out = await new Promise<{ code: number; err: string }>((resolve) =>
        execFile(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], opts, (e, _o, err) =>
          resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, err }),
        ),
      );
      expect(out.code, out.err).toBe(2);
      const first = out.err.trim().split('\n')[0]!;
      expect(first).toMatch(why);
      expect(first).toMatch(
        /^usepod-agent: the identity lock .*identity\.key\.lock .*; remove it \(USEPOD_IDENTITY_IO\)$/,
      );
      expect(out.err).not.toMatch(/\n\s+at /);
    }
  }, 30_000);
});
