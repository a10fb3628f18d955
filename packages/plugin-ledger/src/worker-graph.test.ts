import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** The value imports (not `import type`) of a source file, relative ones resolved to their .ts file. */
function valueImports(file: URL): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)].map(
    (m) => m[1]!,
  );
  return specs;
}

describe("the ledger's thread", () => {
  it('loads no @usepod-agent/core: its error class cost the thread ~27 MB resident (issue 30)', () => {
    // The dashboard's reader (`ledgerReader`, op 'series') is this thread too: its earnings sums and
    // no core (the dashboard's own thread loaded core again: ~37 MB), nor csv-stringify, which only
    // `earnings --csv` needs (required when it is asked for).
    const seen = new Set<string>();
    const packages = new Set<string>();
    const walk = (file: URL) => {
      if (seen.has(file.href)) return;
      seen.add(file.href);
      for (const spec of valueImports(file)) {
        if (spec.startsWith('.')) walk(new URL(spec.replace(/\.js$/, '.ts'), file));
        else packages.add(spec);
      }
    };
    walk(new URL('./worker.ts', import.meta.url));
    expect([...packages].sort()).toEqual([
      'better-sqlite3',
      'node:fs',
      'node:module',
      'node:os',
      'node:path',
      'node:worker_threads',
    ]);
  });
});
