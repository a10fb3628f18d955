import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { localTime } from './when.js';

const SRC = fileURLToPath(new URL('.', import.meta.url));

describe('localTime', () => {
  it('writes YYYY-MM-DD HH:MM with the offset, in the local zone, whatever the locale', () => {
    const script = `import('${new URL('./when.ts', import.meta.url).href}').then((m) => console.log(m.localTime(Date.UTC(2026, 11, 6, 23, 5, 59))))`;
    const at = (tz: string) =>
      execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
        env: { ...process.env, TZ: tz, LANG: 'en_US.UTF-8', LC_ALL: 'en_US.UTF-8' },
        encoding: 'utf8',
      }).trim();
    expect(at('UTC')).toBe('2026-12-06 23:05 +00:00');
    expect(at('Europe/Paris')).toBe('2026-12-07 00:05 +01:00');
    expect(at('America/St_Johns')).toBe('2026-12-06 19:35 -03:30');
    expect(localTime('not a date')).toBe('an unknown time');
  });

  it('is the only way the CLI prints a date for a person: no locale formatting left', () => {
    // Being moved into plugin packages as this is written; they switch to localTime() with the move.
    const moving = new Set(['commands/earnings.ts']);
    const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter(
      (f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !moving.has(f.replaceAll('\\', '/')),
    );
    expect(files).toContain('commands/setup.ts');
    for (const f of files) {
      const text = readFileSync(join(SRC, f), 'utf8');
      expect(text, f).not.toMatch(/toLocale(?:Date|Time)?String|valid_to}/);
    }
  });
});
