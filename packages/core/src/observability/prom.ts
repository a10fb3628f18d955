import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

/**
 * The parts of prom-client the agent uses, required by path: its index also loads the Summary (with
 * tdigest and bintrees), the Pushgateway (http, https), the cluster aggregator (node:cluster) and more,
 * which nothing here calls (decision 0008's fourth pass). prom-client has no `exports` map and the
 * version is pinned; the classes are the index's own (the same files), so plugins' metrics mix with them.
 */
const requireProm = createRequire(import.meta.url);

export type Registry = Prom.Registry;
export const Registry: typeof Prom.Registry = requireProm('prom-client/lib/registry.js');
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Counter: typeof Prom.Counter = requireProm('prom-client/lib/counter.js');
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Gauge: typeof Prom.Gauge = requireProm('prom-client/lib/gauge.js');
export type Histogram<T extends string = string> = Prom.Histogram<T>;
export const Histogram: typeof Prom.Histogram = requireProm('prom-client/lib/histogram.js');
export const collectDefaultMetrics: typeof Prom.collectDefaultMetrics = requireProm(
  'prom-client/lib/defaultMetrics.js',
);
