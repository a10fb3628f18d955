import type { Backend } from '../backend/backend.js';
import { locatorFor } from '../config/load.js';
import type { BackendConfig, Config } from '../config/schema.js';
import { UsepodError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { redactor } from '../observability/redact.js';
import { threwIn } from '../plugins/bounded.js';
import type { PluginHost } from '../plugins/host.js';
import { checkBackends } from '../plugins/kinds.js';
import {
  cliPluginRoot,
  defaultPlugins,
  findPluginForSection,
  type Installed,
  importInstalled,
  installedPlugins,
  loadPluginForKind,
  unclaimedSection,
} from '../plugins/loader.js';
import { pluginFromModule, validatePlugin } from '../plugins/plugin.js';
import type { CreateAgentOptions } from './types.js';

/** The agent's start-up: its plugins applied, then one backend per `[[backends]]` entry. */

/**
 * Every plugin the config needs, applied in order: the plugins given, a package for every configured
 * kind and every plugin section none of them provides, then the installed packages that apply by default
 * (unless `defaultPlugins` is false). Then what they were given is checked: each section's mistakes and
 * each backend entry's options, all at `file:line:column`. `validate` stops here; `start` goes on.
 */
export async function loadPlugins(
  host: PluginHost,
  config: Config,
  opts: Pick<CreateAgentOptions, 'plugins' | 'pluginSearchRoots' | 'defaultPlugins' | 'timing'>,
): Promise<void> {
  const roots = opts.pluginSearchRoots ?? [process.cwd(), cliPluginRoot()];
  // The node_modules folders are read once, when the first package is looked for (none: never).
  let found: Installed[] | undefined;
  const installed = () => {
    found ??= installedPlugins(roots);
    return found;
  };
  const ms = opts.timing?.pluginLoadMs;
  for (const p of opts.plugins ?? []) {
    await host.apply(
      typeof p === 'function' ? pluginFromModule({ default: p }, 'plugin') : validatePlugin(p, 'plugin'),
    );
  }
  for (const entry of config.backends) {
    if (host.kinds.has(entry.kind)) continue;
    const plugin = await loadPluginForKind(entry.kind, installed(), undefined, ms);
    await host.apply(plugin);
    if (!host.kinds.has(entry.kind)) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${plugin.name}" was loaded for kind "${entry.kind}" but did not register it`,
        { user: true, plugin: plugin.name },
      );
    }
  }
  const features = host.features;
  for (const section of features.pluginSections()) {
    if (features.claimedBy(section)) continue;
    const pkg = findPluginForSection(section, installed());
    if (!pkg) throw unclaimedSection(section, config.source, locatorFor(config.source)?.(section));
    await host.apply(await importInstalled(pkg, undefined, ms));
    if (!features.claimedBy(section)) {
      throw new UsepodError(
        'USEPOD_PLUGIN_INVALID',
        `plugin "${pkg.name}" declares [${section}] in its package.json but did not claim it`,
        { user: true, plugin: pkg.name },
      );
    }
  }
  if (opts.defaultPlugins !== false) {
    for (const pkg of defaultPlugins(installed())) {
      if (!host.has(pkg.name))
        await host.apply(await importInstalled(pkg, undefined, ms), { byDefault: true });
    }
  }
  features.throwMistakes();
  checkBackends(config, host.kinds);
}

/**
 * One backend per entry, as its kind's plugin declared it (options parsed, requirements checked); an
 * entry whose API key variable is not set is skipped with a warning, and every key read is redacted.
 */
export function createBackends(
  host: Pick<PluginHost, 'kinds'>,
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
    try {
      out.push(kind.create(entry, { apiKey, log: log.child(`backend:${entry.kind}`) }));
    } catch (err) {
      throw threwIn(err, kind.plugin, `create() for backends[${i}]`);
    }
  });
  return out;
}
