import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceUninstall extends ServiceCommand {
  static override summary = 'Stop the service and remove it (config, identity and state are kept).';
  static override examples = ['sudo <%= config.bin %> service uninstall'];
  static override flags = { ...serviceFlags };
  protected readonly action = 'uninstall' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceUninstall);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
