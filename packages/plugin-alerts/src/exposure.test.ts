import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestAgent } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { exposedConfig } from './exposure.js';
import alerts from './index.js';

/**
 * A webhook URL is a secret (anyone who reads it can post to the owner's channel): `[[alerts]]` in an
 * agent.toml other local users can read is said at start and by `doctor`, as core says it for the
 * enrollment code. `setup` writes the file 0644, before any alert is in it.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function configFile(mode: number) {
  const dir = await mkdtemp(join(tmpdir(), 'usepod-alerts-mode-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'agent.toml');
  await writeFile(file, '[[alerts]]\nurl = "https://hooks.example.com/services/T0/B0/s3cr3t"\n');
  await chmod(file, mode);
  return file;
}

describe.runIf(process.platform !== 'win32')('webhook URLs in a config others can read', () => {
  it('are said once at start, with the file, its mode and the fix; the owner-only file is not', async () => {
    for (const [mode, said] of [
      [0o644, true],
      [0o640, true],
      [0o600, false],
    ] as const) {
      const file = await configFile(mode);
      const t = await createTestAgent({
        plugins: [alerts({})],
        logLevel: 'info',
        config: {
          source: file,
          alerts: [{ url: 'https://hooks.example.com/services/T0/B0/s3cr3t' }],
        } as never,
      });
      cleanup.push(() => t.close());
      // Plugins are applied as the agent starts.
      expect((await t.start()).ok).toBe(true);
      const lines = t.lines.filter((l) => l.includes('readable by group or others'));
      expect(lines, `mode ${mode.toString(8)}`).toHaveLength(said ? 1 : 0);
      if (said) {
        expect(lines[0]).toContain(`config file ${file} holds the alerts' webhook URLs`);
        expect(lines[0]).toContain(`run: chmod 600 ${file}`);
        // The warning names the file, never the URL it protects.
        expect(lines[0]).not.toContain('s3cr3t');
      }
      // `doctor` says the same, with the fix.
      const found = (await t.agent.doctor({ engineCapacity: undefined })).filter((f) => f.name === 'alerts');
      expect(found).toEqual([
        said
          ? {
              name: 'alerts',
              level: 'warn',
              detail: expect.stringContaining('readable by group or others'),
              fix: `chmod 600 ${file}`,
            }
          : { name: 'alerts', level: 'ok', detail: '1 webhook(s)' },
      ]);
    }
  });

  it('is nothing for a file that is gone or is not a regular file', async () => {
    expect(exposedConfig(undefined)).toBeUndefined();
    expect(exposedConfig('/nonexistent/agent.toml')).toBeUndefined();
    expect(exposedConfig(tmpdir())).toBeUndefined();
  });
});
