import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceStart extends ServiceCommand {
  static override summary = 'Start the service.';
  static override examples = ['sudo <%= config.bin %> service start'];
  static override flags = { ...serviceFlags };
  protected readonly action = 'start' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceStart);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
