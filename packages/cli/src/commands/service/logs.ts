import * as Flags from '@oclif/core/flags';
import { ServiceCommand, serviceFlags } from '../../service/command.js';

export default class ServiceLogs extends ServiceCommand {
  static override summary = 'Show the service logs (-f to follow).';
  static override examples = ['<%= config.bin %> service logs', '<%= config.bin %> service logs -f'];
  static override flags = {
    ...serviceFlags,
    follow: Flags.boolean({ char: 'f', summary: 'Keep printing new lines.', default: false }),
    lines: Flags.integer({ char: 'n', summary: 'How many recent lines.', default: 200, min: 1 }),
  };
  protected readonly action = 'logs' as const;

  async run(): Promise<void> {
    const { flags } = await this.parse(ServiceLogs);
    await this.execute(await this.options(flags), flags['dry-run']);
  }
}
