import { AGENT_VERSION } from '@usepod-agent/core';
import { BaseCommand, jsonFlag } from '../base.js';

export default class Version extends BaseCommand {
  static override summary = 'Show the agent, core and Node.js versions.';
  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json'];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Version);
    const info = {
      agent: this.config.version,
      core: AGENT_VERSION,
      protocol_agent_version: AGENT_VERSION,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    };
    if (flags.json) this.printJson(info);
    else this.out(`usepod-agent/${info.agent} core/${info.core} node/${info.node} ${info.platform}`);
  }
}
