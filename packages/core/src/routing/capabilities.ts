import type { Backend, BackendModel } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import type { AgentHooks } from '../plugins/hooks.js';
import type { CapabilitiesFrame, CapabilityModel } from '../protocol/frames.js';
import { ownEntry } from '../untrusted.js';
import { AGENT_VERSION } from '../version.js';

/**
 * Builds the `capabilities` frame (PROTOCOL.md section 3) from what the healthy
 * backends serve and the operator's prices.
 */

export interface ServedModel {
  backend: Backend;
  model: BackendModel;
  /** How many requests the backend's engine runs at once, when it says (slots, parallel). */
  capacity?: number | undefined;
}

/** A kind's routing preference, lower first, as its plugin declared it (`BackendKind.priority`). */
export type KindPriority = (kind: string) => number;

/** Without plugins' word (tests, embedding code), every kind ranks the same. */
export const samePriority: KindPriority = () => 0;

/** Price from config for a model: the per-model entry wins over the defaults. */
export function resolvePrice(config: Config, served: ServedModel[]): { input: number; output: number } {
  const id = served[0]!.model.id;
  const specific = ownEntry(config.pricing.models, id);
  if (specific) return { input: specific.input_per_1m, output: specific.output_per_1m };
  // A remote backend may carry the upstream's own price; the operator's markup applies on top.
  const upstream = served.find((s) => s.model.upstreamPrice)?.model.upstreamPrice;
  if (upstream) return { input: upstream.input_per_1m, output: upstream.output_per_1m };
  return { input: config.pricing.default_input_per_1m, output: config.pricing.default_output_per_1m };
}

/** One entry per model id, sorted by model id, zero-priced models left out. */
export function buildModelEntries(
  config: Config,
  served: ServedModel[],
  priority: KindPriority = samePriority,
): CapabilityModel[] {
  const byId = new Map<string, ServedModel[]>();
  for (const s of served) {
    const list = byId.get(s.model.id);
    if (list) list.push(s);
    else byId.set(s.model.id, [s]);
  }
  const out: CapabilityModel[] = [];
  for (const [id, list] of byId) {
    list.sort((a, b) => priority(a.backend.kind) - priority(b.backend.kind));
    const price = resolvePrice(config, list);
    if (price.input <= 0 || price.output <= 0) continue;
    const perModel = ownEntry(config.pricing.models, id)?.max_concurrent;
    // When every engine serving the model says how many requests it runs at once, advertise no more.
    // A model's own capacity (per loaded model or instance) wins over the engine-wide figure.
    const capacities = list.map((s) => s.model.capacity ?? s.capacity);
    const engineCapacity = capacities.every((c) => c !== undefined && c > 0)
      ? capacities.reduce((a, b) => a! + b!, 0)!
      : Number.POSITIVE_INFINITY;
    const entry: CapabilityModel = {
      model_id: id,
      input_per_1m: price.input,
      output_per_1m: price.output,
      max_concurrent: Math.min(
        perModel ?? config.limits.max_concurrent,
        config.limits.max_concurrent,
        engineCapacity,
      ),
      backend: list[0]!.backend.kind,
    };
    // Several engines may serve the model with different windows: advertise one every route can honour.
    const windows = list.flatMap((s) => (s.model.contextWindow ? [s.model.contextWindow] : []));
    if (windows.length > 0) entry.context_window = Math.min(...windows);
    out.push(entry);
  }
  return sortEntries(out);
}

/** Code-point order, as a Rust `sort_by` on strings gives. */
export function sortEntries(entries: CapabilityModel[]): CapabilityModel[] {
  return entries.sort((a, b) => (a.model_id < b.model_id ? -1 : a.model_id > b.model_id ? 1 : 0));
}

export function capabilitiesFrame(
  config: Config,
  models: CapabilityModel[],
  agentVersion: string,
): CapabilitiesFrame {
  return {
    type: 'capabilities',
    models,
    limits: {
      max_concurrent_total: config.limits.max_concurrent,
      max_tokens_per_minute: config.limits.max_tokens_per_minute ?? null,
    },
    metadata: { agent_version: agentVersion },
  };
}

/**
 * The frame to advertise: the models served, the `onCapabilities` taps' changes, and then the wire rules,
 * whatever the taps did: one entry per id, sorted, no zero prices (PROTOCOL.md 3).
 */
export async function advertise(
  config: Config,
  served: ServedModel[],
  priority: KindPriority,
  hooks: AgentHooks,
): Promise<CapabilitiesFrame> {
  const adjusted = await hooks.onCapabilities.promise(buildModelEntries(config, served, priority));
  const seen = new Set<string>();
  const models = sortEntries(
    adjusted.filter((m) => {
      if (m.input_per_1m <= 0 || m.output_per_1m <= 0 || seen.has(m.model_id)) return false;
      seen.add(m.model_id);
      return true;
    }),
  );
  return capabilitiesFrame(config, models, AGENT_VERSION);
}
