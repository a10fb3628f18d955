import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { generateIdentity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import { ProviderIdSaver } from './provider-id.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-provider-id-'));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
});
afterEach(async () => {
  vi.useRealTimers();
  await rm(dir, { recursive: true, force: true });
});

/** Until `done()`, turn by turn (setImmediate is not faked): the file system answers in its own time. */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((r) => setImmediate(r));
}

function logger(lines: string[]): Logger {
  const at = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => logger(lines),
  };
}

/** An identity whose file cannot be written while a folder stands at its path (rename fails: EISDIR). */
async function blockedIdentity() {
  const path = join(dir, 'identity.key');
  await mkdir(path);
  const identity = generateIdentity(path);
  identity.providerId = 'prov_b';
  return { path, identity, unblock: () => rm(path, { recursive: true }) };
}

describe('ProviderIdSaver', () => {
  it('retries a failed save with a growing delay, warned once, until it is written', async () => {
    const { path, identity, unblock } = await blockedIdentity();
    const lines: string[] = [];
    const saver = new ProviderIdSaver(identity, logger(lines), { retryMs: 1_000 });
    await saver.save();
    expect(lines).toEqual([expect.stringMatching(/^warn the provider id prov_b could not be saved to /)]);
    expect(saver.owed).toBe(true);
    // The first retry, 1 s on, fails too: silently, and the next is set.
    await vi.advanceTimersByTimeAsync(1_000);
    await until(() => vi.getTimerCount() === 1);
    expect(lines).toHaveLength(1);
    await unblock();
    // The second retry comes 2 s after the first.
    await vi.advanceTimersByTimeAsync(1_999);
    expect(saver.owed).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => !saver.owed);
    expect(await readFile(path, 'utf8')).toContain('provider_id: prov_b');
    expect(lines.at(-1)).toBe('info provider id saved');
    expect(vi.getTimerCount()).toBe(0);
    await saver.close();
  });

  it('closed (the agent stops): no timer is left and nothing is written after', async () => {
    const { path, identity, unblock } = await blockedIdentity();
    const saver = new ProviderIdSaver(identity, logger([]), { retryMs: 1_000 });
    await saver.save();
    expect(vi.getTimerCount()).toBe(1);
    await saver.close();
    expect(vi.getTimerCount()).toBe(0);
    await unblock();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    await saver.save();
    await expect(readFile(path, 'utf8')).rejects.toThrow(/ENOENT/);
    // Still owed: the next agent given this identity saves it even when its coordinator assigns the same id.
    expect(new ProviderIdSaver(identity, logger([])).owed).toBe(true);
  });

  it('a save asked for while one is under way is written after it: the newest id wins', async () => {
    const path = join(dir, 'identity.key');
    const identity = generateIdentity(path);
    identity.providerId = 'prov_a';
    const saver = new ProviderIdSaver(identity, logger([]));
    const first = saver.save();
    identity.providerId = 'prov_b';
    const second = saver.save();
    await Promise.all([first, second]);
    expect(await readFile(path, 'utf8')).toContain('provider_id: prov_b');
    await saver.close();
  });
});
