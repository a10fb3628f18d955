import { Flags } from '@oclif/core';
import { expandHome } from '@usepod-agent/core/internal';
import { control } from '@usepod-agent/plugin-control';
import ms from 'ms';
import { BaseCommand, failUsage, jsonFlag } from '../base.js';

export default class Pause extends BaseCommand {
  static override summary = 'Stop taking new jobs for a while; jobs in flight finish.';
  static override description =
    'Tells the running agent (over its local control socket, beside the identity key) to advertise no model and to turn new jobs away, while the jobs in flight finish. With --for it resumes by itself; a pause outlives a restart of the agent until it ends or `usepod-agent resume`.';
  static override examples = [
    '<%= config.bin %> pause --for 2h --reason "gaming"',
    '<%= config.bin %> pause',
    '<%= config.bin %> resume',
  ];
  static override flags = {
    for: Flags.string({ summary: 'How long: 30m, 2h, 1d (none: until resume).', helpValue: 'DURATION' }),
    reason: Flags.string({ summary: 'Why, shown in status and the logs.', helpValue: 'TEXT' }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Pause);
    let until: number | undefined;
    if (flags.for !== undefined) {
      const span = ms(flags.for as ms.StringValue);
      if (typeof span !== 'number' || !(span > 0))
        failUsage(this, `--for ${flags.for} is not a duration`, 'use 30m, 2h or 1d');
      until = Date.now() + span;
    }
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const keyPath = expandHome(config.identity.key_path);
    const reply = await control(keyPath, {
      cmd: 'pause',
      ...(flags.reason ? { reason: flags.reason } : {}),
      ...(until ? { until } : {}),
    });
    if (flags.json) return this.printJson(reply);
    const p = reply.paused;
    this.out(
      p
        ? `Paused (${p.reason})${p.until ? ` until ${new Date(p.until).toLocaleString()}` : ' until `usepod-agent resume`'}; jobs in flight finish.`
        : 'The agent did not pause.',
    );
  }
}
