import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { createTestAgent, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifySignature } from '../packages/core/src/identity/identity.js';
import { BIN, homeEnv } from './cli.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/**
 * A 64 KiB tmpfs for the key (mounting needs root; elsewhere the test is skipped) and a coordinator whose
 * next authentication hands out the provider id `setId` gives (prov_a first).
 */
async function fullDisk(ctx: { skip: (note: string) => never }) {
  const disk = await mkdtemp(join(tmpdir(), 'usepod-id-full-'));
  cleanup.push(() => rm(disk, { recursive: true, force: true }));
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0)
    ctx.skip('no tmpfs could be mounted here (needs root)');
  cleanup.push(async () => {
    spawnSync('umount', [disk]);
  });
  let id = 'prov_a';
  const coordinator = await TestCoordinator.start({ authorize: () => ({ ok: true, providerId: id }) });
  cleanup.push(() => coordinator.close());
  return {
    disk,
    keyPath: join(disk, 'identity.key'),
    coordinator,
    setId: (next: string) => {
      id = next;
    },
  };
}

describe('handshake (PROTOCOL.md section 2)', () => {
  it('signs the decoded nonce and sends the agent version', async () => {
    const t = await createTestAgent();
    cleanup.push(() => t.close());
    expect((await t.start()).ok).toBe(true);
    const session = await t.coordinator.firstAuthenticated();
    const resp = session.authResponse!;
    expect(Object.keys(resp).sort()).toEqual(['agent_version', 'pubkey', 'signature', 'type']);
    expect(resp.agent_version).toBe(t.agent.agentVersion);
    expect(Buffer.from(String(resp.pubkey), 'base64')).toHaveLength(32);
    expect(Buffer.from(String(resp.signature), 'base64')).toHaveLength(64);
    expect(verifySignature(session.nonce!, String(resp.signature), String(resp.pubkey))).toBe(true);
    // Over the base64 text, the same signature does not verify.
    expect(
      verifySignature(
        Buffer.from(session.nonce!.toString('base64')),
        String(resp.signature),
        String(resp.pubkey),
      ),
    ).toBe(false);
  });

  it('never negotiates WebSocket compression, even with a coordinator that would accept it', async () => {
    // Compression would cost CPU on every chunk frame and add latency to each (decision 0004).
    const coordinator = await TestCoordinator.start({ perMessageDeflate: true });
    cleanup.push(() => coordinator.close());
    const t = await createTestAgent({ coordinator });
    cleanup.push(() => t.close());
    expect((await t.start()).ok).toBe(true);
    const session = await coordinator.firstAuthenticated();
    expect(session.upgradeHeaders['sec-websocket-extensions']).toBeUndefined();
    expect(session.ws.extensions).toBe('');
    expect(session.upgradeHeaders['user-agent']).toBe(`usepod-agent/${t.agent.agentVersion}`);
  });

  it('sends enrollment_code only while no provider id exists, and persists the id', async () => {
    const coordinator = await TestCoordinator.start({ enrollmentCode: 'POD-ENROLL-7K9X4LM2' });
    cleanup.push(() => coordinator.close());
    const t = await createTestAgent({
      coordinator,
      config: { coordinator: { enrollment_code: 'POD-ENROLL-7K9X4LM2' } },
    });
    cleanup.push(() => t.close());
    await t.start();
    const first = await coordinator.firstAuthenticated();
    await first.capabilities(); // sent after the id is saved
    expect(first.authResponse?.enrollment_code).toBe('POD-ENROLL-7K9X4LM2');
    expect(first.providerId).toBe('prov_1');
    expect(await readFile(t.identityPath, 'utf8')).toContain('provider_id: prov_1');
    expect(t.agent.providerId).toBe('prov_1');
    // Reconnect: the key now has a provider id, so no enrollment code is sent.
    const next = coordinator.nextAuthenticated();
    first.drain('drain:deploy');
    const second = await next;
    expect(second.authResponse).not.toHaveProperty('enrollment_code');
    expect(second.providerId).toBe('prov_1');
  });

  it('persists a changed provider id', async () => {
    let id = 'prov_a';
    const coordinator = await TestCoordinator.start({ authorize: () => ({ ok: true, providerId: id }) });
    cleanup.push(() => coordinator.close());
    const t = await createTestAgent({ coordinator });
    cleanup.push(() => t.close());
    await t.start();
    const s1 = await coordinator.firstAuthenticated();
    await s1.capabilities();
    expect(await readFile(t.identityPath, 'utf8')).toContain('provider_id: prov_a');
    id = 'prov_b';
    const next = coordinator.nextAuthenticated();
    s1.drain();
    await (await next).capabilities();
    expect(await readFile(t.identityPath, 'utf8')).toContain('provider_id: prov_b');
  });

  it('a provider id a full disk cannot take keeps the session online, warns once, and is saved once there is room', async (ctx) => {
    // A real full disk (fullDisk).
    const { disk, keyPath, coordinator, setId } = await fullDisk(ctx);
    const t = await createTestAgent({
      coordinator,
      logLevel: 'info',
      config: { identity: { key_path: keyPath } },
    });
    cleanup.push(() => t.close());
    await t.start();
    const s1 = await coordinator.firstAuthenticated();
    await s1.capabilities();
    await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
    await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
    setId('prov_b');
    const next = coordinator.nextAuthenticated();
    s1.drain();
    // The session the new id came on stays: capabilities follow, no protocol error, no reconnect.
    const s2 = await next;
    await s2.capabilities();
    expect(t.agent.providerId).toBe('prov_b');
    expect(t.lines.filter((l) => l.includes('protocol error'))).toEqual([]);
    expect(t.lines.filter((l) => l.includes('could not be saved'))).toEqual([
      expect.stringContaining(
        `the provider id prov_b could not be saved to ${keyPath}; retrying (a restart before it is would enroll again)`,
      ),
    ]);
    expect(await readFile(keyPath, 'utf8')).toContain('provider_id: prov_a');
    // Room again: the retry writes it.
    await rm(join(disk, 'fill'));
    for (let i = 0; i < 100 && !(await readFile(keyPath, 'utf8')).includes('prov_b'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(await readFile(keyPath, 'utf8')).toContain('provider_id: prov_b');
    expect(coordinator.sessions.items).toHaveLength(2);
  });

  it('a provider id still unsaved when the agent stops: the retries end with it, nothing is written after', async (ctx) => {
    // A real full disk (fullDisk); the retries come every 20 ms here, doubling.
    const { disk, keyPath, coordinator, setId } = await fullDisk(ctx);
    const t = await createTestAgent({
      coordinator,
      logLevel: 'info',
      config: { identity: { key_path: keyPath } },
      timing: { providerIdRetryMs: 20 },
    });
    cleanup.push(() => t.close());
    await t.start();
    await (await coordinator.firstAuthenticated()).capabilities();
    await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
    await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
    setId('prov_b');
    const next = coordinator.nextAuthenticated();
    coordinator.sessions.items[0]!.drain();
    await (await next).capabilities();
    expect(t.lines.filter((l) => l.includes('could not be saved'))).toHaveLength(1);
    expect((await t.stop()).ok).toBe(true);
    const saved = t.lines.filter((l) => l.includes('provider id saved')).length;
    // Room again, after the stop: a retry left running would write prov_b within 20 + 40 + 80 + 160 ms.
    await rm(join(disk, 'fill'));
    await new Promise((r) => setTimeout(r, 600));
    expect(await readFile(keyPath, 'utf8')).toContain('provider_id: prov_a');
    expect(t.lines.filter((l) => l.includes('provider id saved'))).toHaveLength(saved);
  });

  it('sends capabilities after every auth_ok', async () => {
    const engine = await new VllmEmulator().start();
    cleanup.push(() => engine.close());
    const t = await createTestAgent({
      plugins: [vllmPlugin],
      config: { backends: [{ kind: 'vllm', url: engine.url }] },
    });
    cleanup.push(() => t.close());
    await t.start();
    const s1 = await t.coordinator.firstAuthenticated();
    expect((await s1.capabilities()).models).toHaveLength(1);
    const next = t.coordinator.nextAuthenticated();
    s1.drain('drain:deploy');
    const s2 = await next;
    expect((await s2.capabilities()).models).toHaveLength(1);
    // Capabilities is the first frame after auth_ok on each session.
    for (const s of [s1, s2]) expect(s.frames.items[0]?.type).toBe('auth_response');
    for (const s of [s1, s2]) expect(s.frames.items[1]?.type).toBe('capabilities');
  });

  it('shows auth_failed to the operator and retries with escalating backoff', async () => {
    let refusals = 3;
    const coordinator = await TestCoordinator.start({
      authorize: () => (refusals-- > 0 ? { ok: false, reason: 'key revoked' } : { ok: true }),
    });
    cleanup.push(() => coordinator.close());
    const t = await createTestAgent({
      coordinator,
      logLevel: 'info',
      timing: { backoffInitialMs: 40, backoffMaxMs: 10_000 },
    });
    cleanup.push(() => t.close());
    const waits: { waitMs: number; preAuthFailures: number }[] = [];
    t.agent.on('reconnect', (r) => waits.push(r));
    await t.start();
    const s = await coordinator.firstAuthenticated();
    expect(
      t.lines.some((l) => l.includes('coordinator refused authentication') && l.includes('key revoked')),
    ).toBe(true);
    // Three pre-auth failures: the base doubles each time (40, 80, 160 ms, each x [0.8, 1.2]).
    expect(waits.map((w) => w.preAuthFailures)).toEqual([1, 2, 3]);
    [40, 80, 160].forEach((base, i) => {
      expect(waits[i]!.waitMs).toBeGreaterThanOrEqual(base * 0.8 - 1);
      expect(waits[i]!.waitMs).toBeLessThanOrEqual(base * 1.2 + 1);
    });
    // A session that reached auth_ok resets the backoff when it ends.
    await s.capabilities();
    const next = coordinator.nextAuthenticated();
    s.kill();
    await next;
    expect(waits[3]!.preAuthFailures).toBe(0);
    expect(waits[3]!.waitMs).toBeLessThanOrEqual(40 * 1.2 + 1);
  });

  it("logs auth_failed's reason escaped, in text and JSON: no terminal escape, C1 or bidi control reaches a line raw", async () => {
    const reason = '\u001b]0;owned\u0007\u001b[2Jkey \u202edeyovér\u009b31m\u2066';
    const coordinator = await TestCoordinator.start({ authorize: () => ({ ok: false, reason }) });
    cleanup.push(() => coordinator.close());
    const dir = await mkdtemp(join(tmpdir(), 'usepod-refused-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const cfg = join(dir, 'agent.toml');
    const toml = `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'identity.key')}"\n`;
    await writeFile(cfg, `${toml}[observability]\nprometheus_addr = "127.0.0.1:0"\n`, { mode: 0o600 });
    for (const format of ['text', 'json']) {
      const child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], {
        env: { ...homeEnv(dir), USEPOD_LOG_FORMAT: format },
      });
      let out = '';
      for (const s of [child.stdout!, child.stderr!])
        s.on('data', (d: Buffer) => (out += d.toString('utf8')));
      const exited = new Promise((r) => child.on('exit', r));
      try {
        await vi.waitFor(() => expect(out).toContain('coordinator refused authentication'), {
          timeout: 15_000,
        });
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
      const line = out.split('\n').find((l) => l.includes('coordinator refused authentication'))!;
      // Before: U+202E and U+2066 went out as they came, and reversed what followed them on screen.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters that must not pass.
      expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/);
      expect(line).toContain('\\u202edeyov');
    }
  }, 40_000);

  it('treats a wrong first frame, a binary frame and silence as pre-auth protocol errors', async () => {
    let n = 0;
    const coordinator = await TestCoordinator.start({
      onConnection: (ws) => {
        n++;
        if (n === 1) ws.send(JSON.stringify({ type: 'auth_ok', provider_id: 'x' }));
        else if (n === 2) ws.send(Buffer.from([1, 2, 3]), { binary: true });
        else if (n === 3) ws.send('not json');
        else return false; // the fourth connection gets the normal handshake
        return true;
      },
    });
    cleanup.push(() => coordinator.close());
    const t = await createTestAgent({ coordinator });
    cleanup.push(() => t.close());
    const ends: string[] = [];
    t.agent.on('reconnect', (e) => ends.push(`${e.after}:false`));
    await t.start();
    await coordinator.firstAuthenticated();
    expect(ends).toEqual(['protocol:false', 'protocol:false', 'protocol:false']);
  });
});
