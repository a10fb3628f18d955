import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceStatus extends ServiceCommand {
  static override summary = 'Show whether the service runs (exit 3 when it is not installed).';
  static override examples = ['<%= config.bin %> service status'];
  static override flags = { ...serviceFlags };
  protected readonly action = 'status' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceStatus);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
