import { createRequire } from 'node:module';
import { BaseCommand, jsonFlag } from '../base.js';

/** Core's version from its package.json (an exported path): `version` never loads core itself. */
const AGENT_VERSION = (
  createRequire(import.meta.url)('@usepod-agent/core/package.json') as { version: string }
).version;

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
