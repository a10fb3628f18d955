import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { EXIT, writeMistake } from '../../base.js';
import { refuseIncompatible } from '../../plugin-contract.js';
import { leavePeersToTheAgent } from '../../plugins.js';

/** `plugins install`, then the contract check `run` makes; a plugin built for another contract is removed. */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:install'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

export default class PluginsInstall extends Base {
  override async run(): Promise<void> {
    const before = new Set(this.config.plugins.keys());
    await leavePeersToTheAgent(this.config.dataDir);
    try {
      await super.run();
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIT') throw err;
      // oclif's answer was npm's whole command line over three lines; npm has already said why, above.
      const message = String((err as Error).message);
      const npm = /exited with code (\d+)/.exec(message);
      const what = this.argv.filter((a) => !a.startsWith('-')).join(' ');
      const line = npm
        ? `npm could not install ${what} (exit ${npm[1]}); its lines above say why`
        : (message.split('\n')[0] ?? 'install failed');
      writeMistake(line);
      this.exit(EXIT.FAILURE);
    }
    for (const p of this.config.plugins.values()) {
      // What this install added (oclif gives the fresh plugin no 'user' type until the next start).
      if (before.has(p.name)) continue;
      const refused = await refuseIncompatible(this.config, p.name, p.root);
      if (refused) {
        writeMistake(refused);
        this.exit(EXIT.USAGE);
      }
    }
  }
}
