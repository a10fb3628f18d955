import type { Backend } from '../backend/backend.js';
import type { BackendConfig, Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { redactor } from '../observability/redact.js';
import type { PluginHost } from '../plugins/host.js';
import { checkBackends } from '../plugins/kinds.js';
import { loadPluginForKind } from '../plugins/loader.js';
import { pluginFromModule, validatePlugin } from '../plugins/plugin.js';
import type { CreateAgentOptions } from './types.js';

/** The agent's start-up: its plugins applied, then one backend per `[[backends]]` entry. */

/** The plugins given, then a plugin package for every configured kind none of them registers. */
export async function loadPlugins(
  host: PluginHost,
  config: Config,
  opts: Pick<CreateAgentOptions, 'plugins' | 'pluginSearchRoots'>,
): Promise<void> {
  for (const p of opts.plugins ?? []) {
    await host.apply(
      typeof p === 'function' ? pluginFromModule({ default: p }, 'plugin') : validatePlugin(p, 'plugin'),
    );
  }
  for (const entry of config.backends) {
    if (host.kinds.has(entry.kind)) continue;
    const plugin = await loadPluginForKind(entry.kind, {
      ...(opts.pluginSearchRoots ? { searchRoots: opts.pluginSearchRoots } : {}),
    });
    await host.apply(plugin);
    if (!host.kinds.has(entry.kind)) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin.name}" was loaded for kind "${entry.kind}" but did not register it`,
        { user: true, plugin: plugin.name },
      );
    }
  }
}

/**
 * One backend per entry, as its kind's plugin declared it (options parsed, requirements checked); an
 * entry whose API key variable is not set is skipped with a warning, and every key read is redacted.
 */
export function createBackends(
  host: PluginHost,
  config: Config,
  env: Record<string, string | undefined>,
  log: Logger,
  /** Told of an entry skipped for its key (default: a warning); `selftest` lists it as untested. */
  onSkip?: (entry: BackendConfig, index: number, why: string) => void,
): Backend[] {
  const out: Backend[] = [];
  checkBackends(config, host.kinds).forEach((entry, i) => {
    let apiKey: string | undefined;
    if (entry.api_key_env) {
      apiKey = env[entry.api_key_env];
      if (!apiKey) {
        if (onSkip) onSkip(entry, i, `${entry.api_key_env} is not set`);
        else {
          log.warn('backend skipped: its API key variable is not set', {
            backend: `backends[${i}]`,
            kind: entry.kind,
            api_key_env: entry.api_key_env,
          });
        }
        return;
      }
      redactor.add(apiKey);
    }
    const kind = host.kinds.get(entry.kind)!;
    out.push(kind.create(entry, { apiKey, log: log.child(`backend:${entry.kind}`) }));
  });
  return out;
}
