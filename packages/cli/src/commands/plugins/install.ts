import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from '@oclif/core';
import { commands } from '@oclif/plugin-plugins';
import { engineText } from '@usepod-agent/core';
import { expandHome } from '@usepod-agent/core/cli';
import { EXIT, failUsage, writeMistake } from '../../base.js';
import { refuseIncompatible } from '../../plugin-contract.js';
import { leavePeersToTheAgent } from '../../plugins.js';

/** `plugins install`, then the contract check `run` makes; a plugin built for another contract is removed. */
// Typed as a plain command: the plugin's own class type cannot be named in our declarations.
const Base = commands['plugins:install'] as unknown as new (
  ...args: ConstructorParameters<typeof Command>
) => Pick<Command, 'argv' | 'config' | 'exit'> & { run(): Promise<unknown> };

/** A path as a person types it (`./x.tgz`, `../dir`, `/abs`, `~/x`, `C:\x`), or a packed tarball's name. */
const LOCAL = /^(?:\.\.?[\\/]|[\\/]|~[\\/]|[A-Za-z]:[\\/])|\.(?:tgz|tar\.gz|tar)$/i;

export default class PluginsInstall extends Base {
  override async run(): Promise<void> {
    // oclif takes anything with a slash for a GitHub slug: `./x.tgz` became https://github.com/./x.tgz and
    // failed after a minute of git (issue 28). A local path is installed as the file or folder it names.
    // After `--` oclif takes `--registry=http://…` for a plugin's URL and npm took it for its own setting:
    // the install ran against that registry (or with `--ignore-scripts=false`, `--prefix=…`). No plugin's
    // name starts with '-'.
    const end = this.argv.indexOf('--');
    const smuggled = end < 0 ? undefined : this.argv.slice(end + 1).find((a) => a.startsWith('-'));
    if (smuggled !== undefined)
      failUsage(
        this,
        `${engineText(smuggled, 200)} is not a plugin: no package name starts with "-"`,
        `npm's settings go in ${join(this.config.dataDir, '.npmrc')}`,
      );
    for (const [i, arg] of this.argv.entries()) {
      if (arg.startsWith('-') || !LOCAL.test(arg)) continue;
      const path = resolve(expandHome(arg));
      if (!existsSync(path))
        failUsage(this, `${path} does not exist`, 'name a packed plugin (.tgz) or its folder');
      this.argv[i] = pathToFileURL(path).href;
    }
    const before = new Set(this.config.plugins.keys());
    const npmrc = await leavePeersToTheAgent(this.config.dataDir);
    if (npmrc) failUsage(this, npmrc, 'remove it, then install again');
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
