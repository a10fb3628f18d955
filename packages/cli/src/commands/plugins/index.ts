import { AGENT_VERSION, engineText } from '@usepod-agent/core';
import { BaseCommand, jsonFlag } from '../../base.js';
import { builtinPlugins } from '../../engines.js';
import { installedPlugins } from '../../plugins.js';

export default class PluginsList extends BaseCommand {
  static override summary = 'List backend plugins and the backend kinds each provides.';
  static override description =
    'Shows the plugins that ship with the agent and those added with `plugins install` or `plugins link`, with the [[backends]] kinds each one provides.';
  static override examples = [
    '<%= config.bin %> plugins',
    '<%= config.bin %> plugins install usepod-agent-plugin-tgi',
    '<%= config.bin %> plugins link ./my-plugin',
    '<%= config.bin %> plugins --json',
  ];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(PluginsList);
    const rows = [
      ...(await builtinPlugins()).map((p) => ({
        name: p.name,
        version: AGENT_VERSION,
        type: 'built-in',
        kinds: [...(p.kinds ?? [])],
        error: undefined as string | undefined,
      })),
      // A linked folder's package.json is read as it is: its name, version or path shown folded.
      ...(await installedPlugins(this.config)).map((p) => ({
        name: engineText(p.name, 214),
        version: engineText(String(p.version ?? ''), 64),
        type: p.type === 'link' ? `linked ${engineText(p.root, 1024)}` : 'installed',
        kinds: [...(p.plugin?.kinds ?? [])],
        error: p.error,
      })),
    ];
    if (flags.json) {
      this.printJson(rows);
      return;
    }
    const w = Math.max(...rows.map((r) => r.name.length));
    for (const r of rows) {
      const kinds = r.kinds.length
        ? `kinds: ${r.kinds.join(', ')}`
        : r.error
          ? `not usable: ${r.error}`
          : 'no backend kinds';
      this.out(`${r.name.padEnd(w)}  ${r.version.padEnd(8)} ${kinds}  (${r.type})`);
    }
  }
}
