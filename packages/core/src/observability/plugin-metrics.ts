import { UsepodError } from '../errors.js';
import { engineText } from '../untrusted.js';
import { Counter, Gauge, type Registry } from './prom.js';

/**
 * Metrics a plugin adds to `/metrics` (`ctx.metrics`), on the agent's registry, without tying plugins to
 * prom-client: a name under `usepod_agent_`, declared label names, and label values folded and bounded
 * (a GPU's name, a process name: another local user chooses them). Each metric keeps at most
 * `MAX_SERIES` label sets; past that, new ones are dropped rather than grow memory.
 */
export const MAX_SERIES = 256;

export type Labels = Record<string, string | number>;

export interface PluginGauge {
  set(value: number, labels?: Labels): void;
  /** Forgets a label set (a GPU gone). */
  remove(labels: Labels): void;
}
export interface PluginCounter {
  inc(value?: number, labels?: Labels): void;
}
export interface PluginMetrics {
  gauge(name: string, help: string, labelNames?: readonly string[]): PluginGauge;
  counter(name: string, help: string, labelNames?: readonly string[]): PluginCounter;
}

const NAME = /^usepod_agent_[a-z0-9_]{1,80}$/;
const LABEL = /^[a-z_][a-z0-9_]{0,40}$/;

export function pluginMetrics(registry: Registry, plugin: string): PluginMetrics {
  const check = (name: string, labelNames: readonly string[]) => {
    if (!NAME.test(name) || !labelNames.every((l) => LABEL.test(l))) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin}" declared metric "${name}": names start with usepod_agent_ (a-z, 0-9, _), labels are snake_case`,
        { user: true, plugin },
      );
    }
    if (registry.getSingleMetric(name)) {
      throw new UsepodError('USEPOD_PLUGIN_INVALID', `plugin "${plugin}" declared metric "${name}" twice`, {
        user: true,
        plugin,
      });
    }
  };
  /**
   * A metric's label sets: each folded, at most MAX_SERIES kept; `admit` gives the folded labels, or
   * undefined for a new set past the bound (dropped rather than grow memory).
   */
  const series = (labelNames: readonly string[]) => {
    const seen = new Set<string>();
    const fold = (labels: Labels | undefined): Record<string, string> => {
      const out: Record<string, string> = {};
      for (const l of labelNames) out[l] = engineText(String(labels?.[l] ?? ''), 64);
      return out;
    };
    return {
      admit(labels: Labels | undefined): Record<string, string> | undefined {
        const l = fold(labels);
        const key = JSON.stringify(l);
        if (!seen.has(key)) {
          if (seen.size >= MAX_SERIES) return undefined;
          seen.add(key);
        }
        return l;
      },
      forget(labels: Labels): Record<string, string> {
        const l = fold(labels);
        seen.delete(JSON.stringify(l));
        return l;
      },
    };
  };
  return {
    gauge(name, help, labelNames = []) {
      check(name, labelNames);
      const g = new Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
      const s = series(labelNames);
      return {
        set(value, labels) {
          const l = Number.isFinite(value) ? s.admit(labels) : undefined;
          if (l) g.set(l, value);
        },
        remove: (labels) => g.remove(s.forget(labels)),
      };
    },
    counter(name, help, labelNames = []) {
      check(name, labelNames);
      const c = new Counter({ name, help, labelNames: [...labelNames], registers: [registry] });
      const s = series(labelNames);
      return {
        inc(value = 1, labels) {
          const l = Number.isFinite(value) && value >= 0 ? s.admit(labels) : undefined;
          if (l) c.inc(l, value);
        },
      };
    },
  };
}
