import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createTestAgent } from '@usepod-agent/testkit';
import { describe, expect, it } from 'vitest';

/**
 * The Grafana example (issue 32): every series it queries is one the agent exports, every query is
 * narrowed by the `instance` variable, and a table has one row per instance.
 */
const file = fileURLToPath(new URL('../examples/grafana/usepod-agent-dashboard.json', import.meta.url));
const dash = JSON.parse(readFileSync(file, 'utf8')) as {
  templating: { list: { name: string }[] };
  panels: { title: string; type: string; targets: { expr: string }[] }[];
};
const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr));

describe('examples/grafana', () => {
  it('has an instance variable, a per-instance table, and every query narrowed to $instance', () => {
    expect(dash.templating.list.map((v) => v.name)).toContain('instance');
    const table = dash.panels.find((p) => p.type === 'table');
    expect(table?.targets.every((t) => /by \(instance\)/.test(t.expr))).toBe(true);
    for (const e of exprs) {
      const selectors = e.match(/usepod_agent_\w+(\{[^}]*\})?/g) ?? [];
      for (const s of selectors) expect(s, e).toContain('instance=~"$instance"');
    }
  });

  it('queries only series the agent exports', async () => {
    const t = await createTestAgent({ config: { observability: { prometheus_addr: '127.0.0.1:0' } } });
    try {
      const started = await t.start();
      if (!started.ok) throw started.error;
      const text = await t.agent.metricsText();
      const exported = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)/gm)].map((m) => m[1]!));
      const names = new Set(exprs.flatMap((e) => e.match(/usepod_agent_\w+/g) ?? []));
      for (const n of names) {
        const base = n.replace(/_(bucket|sum|count)$/, '');
        expect(exported.has(n) || exported.has(base), n).toBe(true);
      }
    } finally {
      await t.close();
    }
  });
});
