import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** The packages a source file's value imports name (relative ones followed to their .ts file). */
function packagesOf(entries: URL[]): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const walk = (file: URL) => {
    if (seen.has(file.href)) return;
    seen.add(file.href);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) walk(new URL(spec.replace(/\.js$/, '.ts'), file));
      else packages.add(spec);
    }
  };
  for (const e of entries) walk(e);
  return packages;
}

describe('the ledger and the GPU plugin', () => {
  it('the ledger reads [energy] through plugin-gpu/tariff only, never the plugin (its watch, tools, processes)', () => {
    const src = new URL('./', import.meta.url);
    const files = readdirSync(src)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => new URL(f, src));
    const gpu = [...packagesOf(files)].filter((p) => p.startsWith('@usepod-agent/plugin-gpu'));
    expect(gpu).toEqual(['@usepod-agent/plugin-gpu/tariff']);
  });

  it('plugin-gpu/tariff loads nothing but core and zod', () => {
    const pkgUrl = new URL('../../plugin-gpu/package.json', import.meta.url);
    const pkg = JSON.parse(readFileSync(pkgUrl, 'utf8')) as {
      exports: Record<string, { source?: string }>;
    };
    const entry = pkg.exports['./tariff']?.source;
    expect(entry).toBe('./src/tariff.ts');
    expect([...packagesOf([new URL(entry!, pkgUrl)])].sort()).toEqual(['@usepod-agent/core', 'zod']);
  });
});
