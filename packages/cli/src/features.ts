import { readFile } from 'node:fs/promises';
import {
  type AgentPlugin,
  at,
  type Config,
  locateTomlKey,
  pluginFromModule,
} from '@usepod-agent/core/internal';

/**
 * The plugins the CLI ships for sections of the config rather than for engines: applied by `run` when
 * their section is set, checked by `validate`. Today one: `[[alerts]]` (@usepod-agent/plugin-alerts).
 */
export async function featurePlugins(config: Config): Promise<AgentPlugin[]> {
  if (config.alerts.length === 0) return [];
  await checkAlerts(config);
  const name = '@usepod-agent/plugin-alerts';
  return [pluginFromModule(await import(name), name)];
}

/** Where a key of the config file is, as `file:line:column`, when the config came from a file. */
export async function alertLocator(config: Config): Promise<((key: string) => string) | undefined> {
  const file = config.source;
  const text = file ? await readFile(file, 'utf8').catch(() => undefined) : undefined;
  return file && text ? (key: string) => at(file, locateTomlKey(text, key)) : undefined;
}

/** `[[alerts]]` checked, a mistake at its `file:line:column`; the webhooks, safe to print. */
export async function checkAlerts(config: Config): Promise<string[]> {
  if (config.alerts.length === 0) return [];
  const { readAlerts, safeTarget } = await import('@usepod-agent/plugin-alerts');
  return readAlerts(config.alerts, config.source, await alertLocator(config)).map(safeTarget);
}
