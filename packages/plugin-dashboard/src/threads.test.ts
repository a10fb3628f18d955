import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** The value imports (not `import type`) of a source file. */
function valueImports(file: URL): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s+(?!type\b)([^;]*?)from\s+'([^']+)'/gms)]
    .filter((m) => !/^\{(?:\s*type\s+\w+\s*,?)*\s*\}\s*$/.test(m[1]!.trim()))
    .map((m) => m[2]!);
}

describe("the dashboard's threads", () => {
  it("makes none of its own: the earnings are summed by plugin-ledger's core-free reader (issue 30)", () => {
    // Its own thread imported @usepod-agent/plugin-ledger's index, hence all of core again: ~37 MB more
    // while a page was open (decision 0010). ledgerReader's graph is checked by worker-graph.test.ts.
    const sources = readdirSync(new URL('.', import.meta.url)).filter(
      (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
    );
    for (const f of sources) {
      expect(valueImports(new URL(f, import.meta.url)), f).not.toContain('node:worker_threads');
      expect(readFileSync(new URL(f, import.meta.url), 'utf8'), f).not.toMatch(/new Worker\(/);
    }
    expect(readFileSync(new URL('./earnings.ts', import.meta.url), 'utf8')).toMatch(/ledgerReader\(path\)/);
  });
});
