import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceRestart extends ServiceCommand {
  static override summary = 'Restart the service.';
  static override examples = ['sudo <%= config.bin %> service restart'];
  static override flags = { ...serviceFlags };
  protected readonly action = 'restart' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceRestart);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
