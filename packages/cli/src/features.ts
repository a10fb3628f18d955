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

/** `[[alerts]]` checked, a mistake at its `file:line:column`; the webhooks, safe to print. */
export async function checkAlerts(config: Config): Promise<string[]> {
  if (config.alerts.length === 0) return [];
  const { readAlerts, safeTarget } = await import('@usepod-agent/plugin-alerts');
  const file = config.source;
  const text = file ? await readFile(file, 'utf8').catch(() => undefined) : undefined;
  const locate = file && text ? (key: string) => at(file, locateTomlKey(text, key)) : undefined;
  return readAlerts(config.alerts, file, locate).map(safeTarget);
}
