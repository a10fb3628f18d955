import { engineText } from '@usepod-agent/core';
import { expandHome } from '@usepod-agent/core/cli';
import { control } from '@usepod-agent/plugin-control';
import { BaseCommand, jsonFlag } from '../base.js';

export default class Resume extends BaseCommand {
  static override summary = 'Take jobs again after `usepod-agent pause`.';
  static override examples = ['<%= config.bin %> resume'];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Resume);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const keyPath = expandHome(config.identity.key_path);
    const reply = await control(keyPath, { cmd: 'resume' });
    if (flags.json) {
      if (!reply.ok) process.exitCode = 1;
      return this.printJson(reply);
    }
    // What the agent answers is folded before it reaches the terminal, whatever answered on the socket.
    if (!reply.ok) this.error(engineText(reply.error ?? 'the agent refused to resume', 300), { exit: 1 });
    // The resume could not be saved (a read-only disk): a restart would pause the agent again.
    if (reply.warning) process.stderr.write(`usepod-agent: warning: ${engineText(reply.warning, 300)}\n`);
    if (!reply.paused) return this.out('Resumed: the agent advertises its models again.');
    const others = (reply.holds ?? []).map((h) => `${h.by}: ${engineText(h.reason, 200)}`).join('; ');
    this.out(`Your pause is lifted, but the agent is still held (${others}); it serves once that ends.`);
  }
}
