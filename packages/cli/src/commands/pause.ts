import * as Flags from '@oclif/core/flags';
import { engineText } from '@usepod-agent/core';
import { expandHome } from '@usepod-agent/core/cli';
import { control, MAX_PAUSE_MS, MAX_REASON } from '@usepod-agent/plugin-control';
import ms from 'ms';
import { BaseCommand, failUsage, jsonFlag } from '../base.js';
import { localTime } from '../when.js';

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
      const span = duration(flags.for);
      if (span === undefined || !(span >= 1000))
        failUsage(this, `--for ${flags.for} is not a duration`, 'use 30m, 2h or 1d');
      // Past ~100 years a date is a typo (and past 275,000 years not a date at all): refused, not clamped.
      if (span > MAX_PAUSE_MS)
        failUsage(this, `--for ${flags.for} is longer than 100 years`, 'use 30m, 2h or 1d, or no --for');
      until = Date.now() + span;
    }
    if (flags.reason !== undefined && flags.reason.length > MAX_REASON)
      failUsage(this, `--reason is ${flags.reason.length} characters long`, `keep it to ${MAX_REASON}`);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const keyPath = expandHome(config.identity.key_path);
    const reply = await control(keyPath, {
      cmd: 'pause',
      ...(flags.reason ? { reason: flags.reason } : {}),
      ...(until ? { until } : {}),
    });
    if (flags.json) {
      if (!reply.ok) process.exitCode = 1;
      return this.printJson(reply);
    }
    // What the agent answers is folded before it reaches the terminal, whatever answered on the socket.
    if (!reply.ok) this.error(engineText(reply.error ?? 'the agent refused the pause', 300), { exit: 1 });
    if (reply.warning) process.stderr.write(`usepod-agent: warning: ${engineText(reply.warning, 300)}\n`);
    const p = reply.paused;
    this.out(
      p
        ? `Paused (${engineText(p.reason, MAX_REASON)})${p.until ? ` until ${localTime(p.until)}` : ' until `usepod-agent resume`'}; jobs in flight finish.`
        : 'The agent did not pause.',
    );
  }
}

/** A duration `ms` reads (30m, 2h, 1d), finite, or undefined (ms throws on text over 100 characters). */
function duration(text: string): number | undefined {
  try {
    const span = ms(text as ms.StringValue);
    return typeof span === 'number' && Number.isFinite(span) ? span : undefined;
  } catch {
    return undefined;
  }
}
