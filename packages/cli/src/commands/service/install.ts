import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceInstall extends ServiceCommand {
  static override summary =
    'Install and start the agent as a system service (systemd, launchd or Windows service).';
  static override examples = [
    '<%= config.bin %> service install --dry-run',
    'sudo <%= config.bin %> service install --config ./agent.toml --log-level debug',
  ];
  // --log-level (a global flag) is written into the service when it is not the default.
  static override flags = { ...serviceFlags };
  protected readonly action = 'install' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceInstall);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
