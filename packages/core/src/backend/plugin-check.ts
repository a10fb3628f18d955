import { validateConfig } from '../config/validate.js';
import { silentLogger } from '../observability/log.js';
import { PluginHost } from '../plugins/host.js';
import type { BackendKind } from '../plugins/kinds.js';
import { type AgentPlugin, pluginFromModule } from '../plugins/plugin.js';

/**
 * What a conformance suite needs to hold a plugin to this core's contract without running an agent:
 * the same checks `run` and `plugins install` make, and the kind exactly as the plugin registers it.
 */

/**
 * The plugin a package exports (an object or a `definePlugin()` factory, called with `options`), checked
 * as the agent checks it: shape, `apiVersion` literal, `core` range. Throws `USEPOD_PLUGIN_INVALID` or
 * `USEPOD_PLUGIN_API_MISMATCH` with one line naming the plugin.
 */
export function checkPlugin(exported: unknown, from = 'plugin', options?: unknown): AgentPlugin {
  return pluginFromModule({ default: exported }, from, options);
}

/**
 * Applies `plugin` alone, under an empty config, and returns what it registered for `kind` (with
 * `create`), or `undefined` when it registers no such kind.
 */
export async function backendKindOf(
  plugin: AgentPlugin,
  kind: string,
): Promise<Required<Pick<BackendKind, 'create'>> | undefined> {
  const host = new PluginHost({ config: validateConfig({}), log: silentLogger });
  await host.apply(plugin);
  const registered = host.kinds.get(kind);
  return registered ? { create: registered.create } : undefined;
}
