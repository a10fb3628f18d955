import { Flags } from '@oclif/core';
import { BaseCommand } from '../base.js';
import { DryRunner, RealRunner } from '../service/runner.js';

export default class Upgrade extends BaseCommand {
  static override summary = 'Update the agent through npm, then tell you how to restart it.';
  static override description =
    'Runs `npm install -g usepod-agent@<version>`. It never pipes a download into a shell. Restart the agent afterwards (`usepod-agent service restart` when it runs as a service).';
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
    const runner = flags['dry-run'] ? new DryRunner((l) => this.out(l)) : new RealRunner();
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const code = await runner.apply({
      kind: 'run',
      cmd: npm,
      args: ['install', '--global', `${this.config.name}@${flags.version}`],
      why: 'install the new version',
      interactive: true,
    });
    if (code !== 0) this.error(`npm exited with code ${code}`, { exit: 1 });
    this.out(
      `Now restart the agent: \`usepod-agent service restart\` (service), or stop and start \`usepod-agent run\`.`,
    );
  }
}
