import { expandHome } from '@usepod-agent/core/internal';
import { BaseCommand, jsonFlag } from '../base.js';
import { control } from '../control.js';

export default class Resume extends BaseCommand {
  static override summary = 'Take jobs again after `usepod-agent pause`.';
  static override examples = ['<%= config.bin %> resume'];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Resume);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const keyPath = expandHome(config.identity.key_path);
    const reply = await control(keyPath, { cmd: 'resume' });
    if (flags.json) return this.printJson(reply);
    this.out(reply.paused ? 'The agent is still paused.' : 'Resumed: the agent advertises its models again.');
  }
}
