import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realEngineCache } from '@usepod-agent/testkit/real';
import { describe, expect, it } from 'vitest';

/** The setup script: idempotent, and one clear line when Debian's sid archive cannot be reached. */
const SCRIPT = fileURLToPath(new URL('../../packages/testkit/scripts/real-engine-setup.sh', import.meta.url));
const skip = process.env.USEPOD_SKIP_REAL_ENGINES === '1';

function run(env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT], { env: { ...process.env, ...env } }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

describe.skipIf(skip)('scripts/real-engine-setup.sh', () => {
  it('a second run reuses the cache: same server, nothing downloaded again', async () => {
    const cache = realEngineCache();
    const first = await run({ USEPOD_ENGINE_CACHE: cache });
    expect(first.code).toBe(0);
    const downloaded = (await stat(join(cache, 'apt', 'download.log'))).mtimeMs;
    const again = await run({ USEPOD_ENGINE_CACHE: cache });
    expect(again.code).toBe(0);
    expect(again.out.trim()).toBe(first.out.trim());
    expect((await stat(join(cache, 'apt', 'download.log'))).mtimeMs).toBe(downloaded);
  });

  it('says in one line that the sid archive cannot be reached, and fails', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'usepod-sid-'));
    try {
      const out = await run({ USEPOD_ENGINE_CACHE: cache, USEPOD_SID_MIRROR: 'http://127.0.0.1:9/debian' });
      expect(out.code).not.toBe(0);
      expect(out.err.trim().split('\n')).toHaveLength(1);
      expect(out.err).toMatch(/sid archive could not be reached/);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});
