import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceStop extends ServiceCommand {
  static override summary = 'Stop the service.';
  static override examples = ['sudo <%= config.bin %> service stop'];
  static override flags = { ...serviceFlags };
  protected readonly action = 'stop' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceStop);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
