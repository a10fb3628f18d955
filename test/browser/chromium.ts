import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BrowserContext, chromium } from 'playwright-core';

const run = promisify(execFile);

/** Debian's Chromium: the browser an operator on Debian or Ubuntu has, driven over CDP by playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

/** Installs Debian's `chromium` when it is missing (root, apt-get), as the container tier installs podman. */
export async function ensureChromium(): Promise<void> {
  if (existsSync(CHROMIUM)) return;
  if (process.getuid?.() !== 0)
    throw new Error(`the browser tier needs ${CHROMIUM}: apt-get install -y chromium`);
  await run('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    maxBuffer: 64 * 1024 * 1024,
  });
}

/**
 * A headless Chromium with a fresh profile that talks to nothing but what a page asks for: no sync,
 * no component updates, no background requests. `hostRules` maps names to 127.0.0.1 (a DNS-rebinding
 * attacker's name, for one).
 */
export async function launch(
  hostRules: string[] = [],
): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), 'usepod-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...(hostRules.length > 0 ? [`--host-resolver-rules=${hostRules.join(',')}`] : []),
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
