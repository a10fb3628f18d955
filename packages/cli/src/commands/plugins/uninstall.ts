import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { failUsage } from '../../base.js';
import { builtinPlugins } from '../../engines.js';

/**
 * `plugins uninstall` in our one-line style (issue 17): a plugin that ships with the
 * agent is not oclif's to remove, and oclif only said "is not installed" of it.
 */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:uninstall'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

export default class PluginsUninstall extends Base {
  override async run(): Promise<void> {
    const builtin = new Set((await builtinPlugins()).map((p) => p.name));
    const shipped = this.argv.find((a) => builtin.has(a));
    if (shipped) {
      failUsage(
        this,
        `${shipped} ships with usepod-agent and cannot be uninstalled`,
        'to stop using it, remove its [[backends]] entries from the config',
      );
    }
    try {
      await super.run();
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIT') throw err;
      failUsage(
        this,
        String((err as Error).message).split('\n')[0] ?? 'uninstall failed',
        "'usepod-agent plugins' lists what is installed",
      );
    }
  }
}
