/**
 * Reads the traces bench/trace-hooks.mjs wrote in each process and splits lane A's time to first
 * byte into hops and in-process segments, median over the rounds, for both paths.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pct } from './consumer.js';

type Event = [number, string];

interface Step {
  name: string;
  /** The event that ends this step, searched from where the previous step ended. */
  match: (label: string) => boolean;
}

const is = (prefix: string) => (l: string) => l.startsWith(prefix);

const PATHS: Record<'agent' | 'direct', Step[]> = {
  agent: [
    { name: 'driver: job frame written', match: is('driver.write') },
    { name: 'hop coordinator -> agent', match: is('agent.read') },
    { name: 'agent: frame read -> job (ws, parse, checks)', match: is('agent.job:received') },
    { name: 'agent: job -> plugin sent it (setup, undici)', match: is('agent.job:request') },
    { name: 'agent: -> request written (undici)', match: is('agent.write') },
    { name: 'hop agent -> engine', match: is('engine.read') },
    { name: 'engine: request -> first write', match: is('engine.write') },
    { name: 'hop engine -> agent', match: is('agent.read') },
    { name: 'agent: response read -> stream (undici)', match: is('agent.job:response') },
    { name: 'agent: stream -> first frame written', match: is('agent.write') },
    { name: 'hop agent -> coordinator', match: is('driver.read') },
  ],
  direct: [
    { name: 'driver: request written', match: is('driver.write') },
    { name: 'hop driver -> engine', match: is('engine.read') },
    { name: 'engine: request -> first write', match: is('engine.write') },
    { name: 'hop engine -> driver', match: is('driver.read') },
  ],
};

export function traceReport(dir: string): string {
  const events: Event[] = [];
  for (const f of readdirSync(dir)) {
    if (f.endsWith('.json')) events.push(...(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Event[]));
  }
  events.sort((a, b) => a[0] - b[0]);
  const rounds: { path: 'agent' | 'direct'; events: Event[]; ttfbUs: number }[] = [];
  let cur: (typeof rounds)[number] | undefined;
  for (const e of events) {
    const [, label] = e;
    if (label.startsWith('driver.start ')) {
      cur = { path: label.split(' ')[1] as 'agent' | 'direct', events: [e], ttfbUs: 0 };
    } else if (cur && label.startsWith('driver.first ')) {
      cur.ttfbUs = Number(label.split(' ')[3]) * 1000;
      rounds.push(cur);
      cur = undefined;
    } else cur?.events.push(e);
  }
  const lines: string[] = [];
  for (const path of ['agent', 'direct'] as const) {
    const steps = PATHS[path];
    const spans: number[][] = steps.map(() => []);
    const rest: number[] = [];
    for (const r of rounds.filter((x) => x.path === path)) {
      const t0 = r.events[0]![0];
      let at = t0;
      let i = 1;
      const got: number[] = [];
      for (const step of steps) {
        while (i < r.events.length && !step.match(r.events[i]![1])) i++;
        if (i >= r.events.length) break;
        got.push(r.events[i]![0] - at);
        at = r.events[i]![0];
        i++;
      }
      if (got.length !== steps.length) continue;
      for (const [k, v] of got.entries()) spans[k]!.push(v);
      rest.push(t0 + r.ttfbUs - at);
    }
    lines.push(`${path} path (${rest.length} rounds), median µs:`);
    for (const [k, s] of steps.entries()) {
      lines.push(`  ${s.name.padEnd(46)} ${pct(spans[k]!, 50).toFixed(0).padStart(6)}`);
    }
    lines.push(`  ${'driver: first bytes -> consumer'.padEnd(46)} ${pct(rest, 50).toFixed(0).padStart(6)}`);
  }
  return lines.join('\n');
}
