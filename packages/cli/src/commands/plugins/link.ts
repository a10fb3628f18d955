import { resolve } from 'node:path';
import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { EXIT } from '../../base.js';
import { packageNameAt, refuseIncompatible } from '../../plugin-contract.js';

/** `plugins link`, then the contract check `run` makes; a plugin built for another contract is unlinked. */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:link'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

export default class PluginsLink extends Base {
  override async run(): Promise<void> {
    await super.run();
    const path = this.argv.find((a) => !a.startsWith('-')) ?? '.';
    const name = packageNameAt(path);
    if (!name) return;
    const refused = await refuseIncompatible(this.config, name, resolve(path));
    if (refused) {
      process.stderr.write(`usepod-agent: ${refused}\n`);
      this.exit(EXIT.USAGE);
    }
  }
}
