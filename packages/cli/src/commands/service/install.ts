import { Flags } from '@oclif/core';
import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceInstall extends ServiceCommand {
  static override summary =
    'Install and start the agent as a system service (systemd, launchd or Windows service).';
  static override examples = [
    '<%= config.bin %> service install --dry-run',
    'sudo <%= config.bin %> service install --config ./agent.toml --log-level debug',
  ];
  static override flags = {
    ...serviceFlags,
    'log-level': Flags.option({
      options: ['error', 'warn', 'info', 'debug'] as const,
      summary: 'Log level of the service (a non-default one is written into it).',
    })(),
  };
  protected readonly action = 'install' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceInstall);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
