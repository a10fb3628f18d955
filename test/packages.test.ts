import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * What each published package ships (issue 17, point 4), read from `npm pack --dry-run`: the license, a
 * build made at pack time, no build info or tests, every `exports` target present, public access for the
 * scoped ones; the examples never publish.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
const packages = readdirSync(join(root, 'packages'));

function targets(exports: unknown): string[] {
  if (typeof exports === 'string') return [exports];
  if (!exports || typeof exports !== 'object') return [];
  return Object.values(exports).flatMap(targets);
}

describe('published packages', () => {
  for (const dir of packages) {
    it(`${dir}: LICENSE, prepack build, no build info or tests, every exports target shipped`, () => {
      const cwd = join(root, 'packages', dir);
      const pkg = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8')) as Record<string, unknown>;
      const [packed] = JSON.parse(
        execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd, encoding: 'utf8' }),
      ) as { files: { path: string }[] }[];
      const files = new Set(packed!.files.map((f) => f.path));
      expect(files.has('LICENSE')).toBe(true);
      expect(readFileSync(join(cwd, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
      expect((pkg.scripts as Record<string, string>).prepack).toMatch(/^tsc -b(?: && |$)/);
      expect([...files].filter((f) => f.includes('tsbuildinfo') || /\.test\.[cm]?[jt]s/.test(f))).toEqual([]);
      for (const t of targets(pkg.exports)) expect(files.has(t.replace(/^\.\//, '')), t).toBe(true);
      for (const b of Object.values((pkg.bin as Record<string, string>) ?? {}))
        expect(files.has(b), b).toBe(true);
      if (String(pkg.name).startsWith('@')) expect(pkg.publishConfig).toEqual({ access: 'public' });
    });
  }

  it('npm pkg fix changes nothing in any published package.json (npm would auto-correct it on publish)', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'usepod-pkgfix-'));
    try {
      for (const dir of packages) {
        const text = readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8');
        writeFileSync(join(scratch, 'package.json'), text);
        execFileSync('npm', ['pkg', 'fix'], { cwd: scratch, stdio: 'pipe' });
        const fixed = JSON.parse(readFileSync(join(scratch, 'package.json'), 'utf8'));
        expect(fixed, dir).toEqual(JSON.parse(text));
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('the CLI ships an oclif manifest made at pack time and leaves none in the checkout', () => {
    const cwd = join(root, 'packages/cli');
    const [packed] = JSON.parse(
      // NODE_ENV as in many developers' shells: oclif would then record src/*.ts paths in the manifest.
      execFileSync('npm', ['pack', '--dry-run', '--json'], {
        cwd,
        encoding: 'utf8',
        stdio: 'pipe',
        env: { ...process.env, NODE_ENV: 'development' },
      }),
    ) as { files: { path: string }[] }[];
    expect(packed!.files.map((f) => f.path)).toContain('oclif.manifest.json');
    // oclif trusts a manifest over the commands on disk: one left behind would hide new commands here.
    expect(existsSync(join(cwd, 'oclif.manifest.json'))).toBe(false);
  });

  it('the examples are private: a release never publishes them', () => {
    for (const ex of ['custom-backend-plugin', 'programmatic']) {
      expect(JSON.parse(readFileSync(join(root, 'examples', ex, 'package.json'), 'utf8')).private, ex).toBe(
        true,
      );
    }
  });
});
