import { resolve } from 'node:path';
import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { EXIT, failUsage, writeMistake } from '../../base.js';
import { packageNameAt, refuseIncompatible } from '../../plugin-contract.js';

/** `plugins link`, then the contract check `run` makes; a plugin built for another contract is unlinked. */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:link'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

export default class PluginsLink extends Base {
  override async run(): Promise<void> {
    const path = this.argv.find((a) => !a.startsWith('-')) ?? '.';
    const name = packageNameAt(path);
    // Before oclif's spinner: its own answer was a dump of its internal state.
    if (!name)
      failUsage(
        this,
        `${resolve(path)} has no package.json with a name`,
        "link the folder of a plugin's package",
      );
    await super.run();
    const refused = await refuseIncompatible(this.config, name, resolve(path));
    if (refused) {
      writeMistake(refused);
      this.exit(EXIT.USAGE);
    }
  }
}
