import { spawn } from 'node:child_process';
import { Flags } from '@oclif/core';
import { UsepodError } from '@usepod-agent/core';
import { readStatusToken, statusTokenPath } from '@usepod-agent/core/cli';
import { BaseCommand, jsonFlag } from '../base.js';

/** The command that opens a URL in the desktop's browser, by platform. */
function opener(): { cmd: string; args: string[] } {
  if (process.platform === 'darwin') return { cmd: 'open', args: [] };
  if (process.platform === 'win32') return { cmd: 'cmd', args: ['/c', 'start', '""'] };
  return { cmd: 'xdg-open', args: [] };
}

export default class Dashboard extends BaseCommand {
  static override summary = 'Print (or open) the address of the running agent’s dashboard, token included.';
  static override description =
    'The dashboard is served by the agent at observability.prometheus_addr. The address carries the status token (status.token beside the identity key, made when the agent starts): whoever has it can pause the agent, so do not share it. The page swaps it for a cookie at once.';
  static override examples = ['<%= config.bin %> dashboard', '<%= config.bin %> dashboard --open'];
  static override flags = {
    open: Flags.boolean({
      summary: 'Open it in the desktop’s browser (xdg-open, open, start).',
      default: false,
    }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Dashboard);
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const addr = config.observability.prometheus_addr;
    if (addr === '' || addr === 'off') {
      throw new UsepodError(
        'USEPOD_USAGE',
        'observability.prometheus_addr is "off": the agent serves no dashboard; set it to 127.0.0.1:9090',
        { user: true },
      );
    }
    const tokenFile = config.observability.token_file;
    const token = readStatusToken(config.identity.key_path, tokenFile);
    if (!token) {
      throw new UsepodError(
        'USEPOD_USAGE',
        `no status token at ${statusTokenPath(config.identity.key_path, tokenFile)}: start the agent once (it makes it), and run this as the agent's user`,
        { user: true },
      );
    }
    const url = `http://${browsable(addr)}/?token=${token}`;
    if (flags.json) return this.printJson({ url });
    this.out(url);
    if (!flags.open) return;
    const o = opener();
    const child = spawn(o.cmd, [...o.args, url], { stdio: 'ignore', detached: true });
    child.on('error', () => this.out(`could not run ${o.cmd}: open the address above in a browser`));
    child.unref();
  }
}

/** An address a browser can reach: a wildcard bind is reached on loopback. */
function browsable(addr: string): string {
  return addr.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
}
