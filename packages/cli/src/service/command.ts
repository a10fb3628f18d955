import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Flags } from '@oclif/core';
import {
  findConfigFile,
  loadConfig,
  loadOrCreateIdentity,
  readConfigFile,
  UsepodError,
} from '@usepod-agent/core/internal';
import { stringify } from 'smol-toml';
import { BaseCommand, EXIT } from '../base.js';
import {
  installedMarker,
  type Platform,
  planService,
  type ServiceAction,
  type ServiceOptions,
  serviceIdentityPath,
} from './plan.js';
import { DryRunner, describeStep, RealRunner, type SystemRunner } from './runner.js';

export const serviceFlags = {
  'dry-run': Flags.boolean({
    summary: 'Print every file it would write and every command it would run; change nothing.',
    default: false,
  }),
  platform: Flags.option({ options: ['linux', 'darwin', 'win32'] as const, hidden: true })(),
};

/** Under `sudo`, the invoking operator's home (macOS: where 0.4.0 put its per-user agent). */
function sudoHome(): string | undefined {
  const user = process.env.SUDO_USER;
  if (!user || process.platform !== 'darwin') return undefined;
  return `/Users/${user}`;
}

/** Shared by the `service *` commands: options from flags and config, then the planned steps. */
export abstract class ServiceCommand extends BaseCommand {
  protected abstract readonly action: ServiceAction;

  protected async options(flags: {
    config?: string | undefined;
    'log-level'?: string | undefined;
    platform?: Platform | undefined;
    follow?: boolean;
    lines?: number;
  }): Promise<ServiceOptions> {
    const platform = (flags.platform ?? process.platform) as Platform;
    if (!['linux', 'darwin', 'win32'].includes(platform)) {
      throw new UsepodError('USEPOD_USAGE', `service is not supported on ${platform}`, { user: true });
    }
    const needsConfig = this.action === 'install';
    let configPath = flags.config ?? (await findConfigFile());
    let serviceConfigToml = '';
    let identityPath = '';
    let drainTimeoutS = 30;
    if (configPath) {
      const { config, path } = await loadConfig({ path: configPath, allowInsecure: true });
      configPath = path;
      identityPath = config.identity.key_path.replace(/^~(?=\/)/, homedir());
      drainTimeoutS = config.limits.drain_timeout_s;
      if (needsConfig) {
        const raw = (await readConfigFile(path)) as Record<string, unknown>;
        const identity = {
          ...(raw.identity as object | undefined),
          key_path: serviceIdentityPath({ platform, identityPath }),
        };
        serviceConfigToml = `# Copied by \`usepod-agent service install\` from ${path}.\n# Edit this file, then run \`usepod-agent service restart\`.\n\n${stringify({ ...raw, identity })}\n`;
      }
    } else if (needsConfig) {
      throw new UsepodError(
        'USEPOD_CONFIG_NOT_FOUND',
        'no config file to install; run `usepod-agent setup` first or pass --config PATH',
        {
          user: true,
        },
      );
    }
    return {
      platform,
      nodePath: process.execPath,
      cliPath: join(this.config.root, 'bin', 'run.js'),
      configPath: configPath ?? '',
      serviceConfigToml,
      identityPath,
      logLevel: flags['log-level'],
      drainTimeoutS,
      ...(flags.follow !== undefined ? { follow: flags.follow } : {}),
      ...(flags.lines !== undefined ? { lines: flags.lines } : {}),
      home: sudoHome() ?? homedir(),
      uid: Number(process.env.SUDO_UID) || (process.getuid?.() ?? 501),
      // The operator who ran `sudo`: the macOS daemon runs as them, with their config and key.
      user: process.env.SUDO_USER || userInfo().username,
    };
  }

  protected async execute(opts: ServiceOptions, dryRun: boolean): Promise<void> {
    const runner: SystemRunner = dryRun ? new DryRunner((l) => this.out(l)) : new RealRunner();
    const marker = installedMarker(opts);
    if (this.action !== 'install' && marker && !runner.exists(marker)) {
      process.stderr.write(
        `usepod-agent: the service is not installed (no ${marker}); run \`usepod-agent service install\`\n`,
      );
      this.exit(EXIT.NOT_INSTALLED);
    }
    const mutates = this.action !== 'status' && this.action !== 'logs';
    if (!dryRun && mutates && opts.platform !== 'win32' && process.getuid?.() !== 0) {
      throw new UsepodError(
        'USEPOD_USAGE',
        `service ${this.action} changes system files; run it with sudo (or add --dry-run to see what it would do)`,
        {
          user: true,
        },
      );
    }
    if (this.action === 'install' && !dryRun && opts.identityPath) {
      // The service copies the operator's key; a first install may come before any `run`.
      const { created } = await loadOrCreateIdentity(opts.identityPath);
      if (created) this.out(`Created identity ${opts.identityPath} (mode 0600). Back it up.`);
    }
    if (this.action === 'install' && opts.platform === 'linux') {
      for (const p of [opts.nodePath, opts.cliPath]) {
        if (p.startsWith('/home/') || p.startsWith('/root/')) {
          process.stderr.write(
            `warning: ${p} is under a home folder, which the unit's ProtectHome=true hides; install Node.js and usepod-agent system-wide\n`,
          );
        }
      }
    }
    for (const step of planService(this.action, opts)) {
      if (!dryRun && !(step.kind === 'run' && step.interactive)) this.out(`- ${describeStep(step)}`);
      const code = await runner.apply(step);
      if (code !== 0 && !(step.kind === 'run' && step.allowFailure)) {
        if (this.action === 'status' && opts.platform === 'win32' && code === 1060)
          this.exit(EXIT.NOT_INSTALLED);
        if (this.action === 'status' || this.action === 'logs') this.exit(code);
        throw new UsepodError(
          'USEPOD_USAGE',
          `\`${describeStep(step).replace(/^run /, '').split('   #')[0]}\` failed with exit code ${code}`,
        );
      }
    }
    if (this.action === 'install') {
      this.out('');
      this.out(
        dryRun
          ? 'Dry run: nothing was changed.'
          : 'Installed and started. Watch it with `usepod-agent service status` and `usepod-agent service logs -f`.',
      );
    }
  }
}
