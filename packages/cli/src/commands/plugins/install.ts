import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { EXIT } from '../../base.js';
import { refuseIncompatible } from '../../plugin-contract.js';

/** `plugins install`, then the contract check `run` makes; a plugin built for another contract is removed. */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:install'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

export default class PluginsInstall extends Base {
  override async run(): Promise<void> {
    const before = new Set(this.config.plugins.keys());
    await super.run();
    for (const p of this.config.plugins.values()) {
      // What this install added (oclif gives the fresh plugin no 'user' type until the next start).
      if (before.has(p.name)) continue;
      const refused = await refuseIncompatible(this.config, p.name, p.root);
      if (refused) {
        process.stderr.write(`usepod-agent: ${refused}\n`);
        this.exit(EXIT.USAGE);
      }
    }
  }
}
