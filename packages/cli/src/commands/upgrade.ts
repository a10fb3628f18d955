import * as Flags from '@oclif/core/flags';
import { BaseCommand, EXIT, failUsage } from '../base.js';
import { installLocation, npmBeside } from '../install-location.js';
import { DryRunner, RealRunner } from '../service/runner.js';

export default class Upgrade extends BaseCommand {
  static override summary = 'Update this install of the agent through npm, then tell you how to restart it.';
  static override description =
    'Runs npm for the install that is running: `npm install --global --prefix <its prefix> usepod-agent@<version>` for a global install (nvm, ~/.npm-global and system prefixes alike), `npm install usepod-agent@<version>` in the project for a project dependency. It never pipes a download into a shell. Restart the agent afterwards (`usepod-agent service restart` when it runs as a service).';
  static override examples = [
    '<%= config.bin %> upgrade',
    '<%= config.bin %> upgrade --version 0.4.2 --dry-run',
  ];
  static override flags = {
    version: Flags.string({ summary: 'Version or dist-tag to install.', default: 'latest' }),
    'dry-run': Flags.boolean({ summary: 'Print the command; change nothing.', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Upgrade);
    const spec = `${this.config.name}@${flags.version}`;
    const where = installLocation(this.config.root);
    if (where.kind === 'npx') {
      this.out(
        `This agent runs through npx, which fetches what you name: \`npx ${spec}\`. Nothing to upgrade.`,
      );
      return;
    }
    if (where.kind === 'checkout') {
      failUsage(
        this,
        `this agent runs from ${where.root}, which npm did not install`,
        `update that folder (git pull, npm run build), or install one with \`npm install --global ${this.config.name}\``,
      );
    }
    const dry = flags['dry-run'];
    const runner = dry ? new DryRunner((l) => this.out(l)) : new RealRunner();
    const npm = npmBeside(process.execPath);
    const args =
      where.kind === 'global'
        ? ['install', '--global', '--prefix', where.prefix, spec]
        : ['install', '--prefix', where.project, spec];
    this.out(
      `Upgrading the agent installed at ${this.config.root} (version ${this.config.version}) to ${flags.version}.`,
    );
    const code = await runner.apply({
      kind: 'run',
      cmd: npm,
      args,
      why: 'install the new version',
      interactive: true,
    });
    if (code !== 0)
      this.error(`npm exited with code ${code}; its lines above say why`, { exit: EXIT.FAILURE });
    if (dry) return;
    this.out(
      'Now restart the agent: `usepod-agent service restart` (service), or stop and start `usepod-agent run`.',
    );
  }
}
