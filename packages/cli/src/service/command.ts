import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join, posix, win32 } from 'node:path';
import * as Flags from '@oclif/core/flags';
import { loadConfig, UsepodError } from '@usepod-agent/core';
import { findConfigFile, loadOrCreateIdentity, readConfigFile, readIdentity } from '@usepod-agent/core/cli';
import { inContainer, LAUNCHER_SOURCE, nodeFlagsOf, updateSection } from '@usepod-agent/plugin-update';
import { stringify } from 'smol-toml';
import { BaseCommand, EXIT } from '../base.js';
import { builtinPlugins } from '../engines.js';
import { npmBeside } from '../install-location.js';
import { installedPlugins } from '../plugins.js';
import {
  hiddenFromUnit,
  installedMarker,
  LINUX,
  linuxUpdateDirProblem,
  type Platform,
  planService,
  type ServiceAction,
  type ServiceOptions,
  type ServiceUpdate,
  serviceIdentityPath,
  unsafePath,
} from './plan.js';
import { DryRunner, describeStep, RealRunner, type SystemRunner } from './runner.js';

export const serviceFlags = {
  'dry-run': Flags.boolean({
    summary: 'Print every file it would write and every command it would run; change nothing.',
    default: false,
  }),
  platform: Flags.option({ options: ['linux', 'darwin', 'win32'] as const, hidden: true })(),
};

/** Under `sudo`, the invoking operator's home (their plugins; on macOS, 0.4.0's per-user agent). */
function sudoHome(): string | undefined {
  const user = process.env.SUDO_USER;
  if (!user) return undefined;
  if (process.platform === 'darwin') return `/Users/${user}`;
  try {
    const entry = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${user}:`));
    return entry?.split(':')[5] || undefined;
  } catch {
    return undefined;
  }
}

/** The operator's plugin folder: where `plugins install` put their plugins (as them, not as root). */
function operatorPluginRoot(dataDir: string): string | undefined {
  const home = process.env.SUDO_USER ? sudoHome() : undefined;
  const root = home ? join(home, '.local', 'share', 'usepod-agent') : dataDir;
  return existsSync(join(root, 'node_modules')) ? root : undefined;
}

/** Shared by the `service *` commands: options from flags and config, then the planned steps. */
export abstract class ServiceCommand extends BaseCommand {
  protected abstract readonly action: ServiceAction;

  protected async options(flags: {
    config?: string | undefined;
    'log-level'?: string | undefined;
    'allow-insecure'?: boolean | undefined;
    platform?: Platform | undefined;
    follow?: boolean;
    lines?: number;
  }): Promise<ServiceOptions> {
    const platform = (flags.platform ?? process.platform) as Platform;
    if (!['linux', 'darwin', 'win32'].includes(platform)) {
      throw new UsepodError('USEPOD_USAGE', `service is not supported on ${platform}`, { user: true });
    }
    const needsConfig = this.action === 'install';
    // Only install reads the config: a broken one must not keep the service from being stopped or removed.
    let configPath = needsConfig ? (flags.config ?? (await findConfigFile())) : undefined;
    let serviceConfigToml = '';
    let identityPath = '';
    let drainTimeoutS = 30;
    let update: ServiceUpdate | undefined;
    // The service runs `run` as this install is told to: a ws:// coordinator only with --allow-insecure,
    // which is then written into the unit.
    const allowInsecure = flags['allow-insecure'] ?? false;
    if (configPath) {
      const { config, path } = await loadConfig({ path: configPath, allowInsecure });
      configPath = path;
      identityPath = config.identity.key_path.replace(/^~(?=\/)/, homedir());
      drainTimeoutS = config.limits.drain_timeout_s;
      // [update] mode = "auto" (not in a container): the service runs the launcher, which switches versions.
      const u = updateSection.safeParse((config as Record<string, unknown>).update ?? {});
      if (u.success && u.data.mode === 'auto' && !inContainer()) {
        const key = serviceIdentityPath({ platform, identityPath });
        const path = platform === 'win32' ? win32 : posix;
        update = {
          dir: u.data.dir ?? path.join(path.dirname(key), 'update'),
          version: this.config.version,
          launcherSource: LAUNCHER_SOURCE,
          npm: npmBeside(process.execPath),
          registry: u.data.registry,
        };
      }
      const raw = (await readConfigFile(path)) as Record<string, unknown>;
      const identity = {
        ...(raw.identity as object | undefined),
        key_path: serviceIdentityPath({ platform, identityPath }),
      };
      serviceConfigToml = `# Copied by \`usepod-agent service install\` from ${path}.\n# Edit this file, then run \`usepod-agent service restart\`.\n\n${stringify({ ...raw, identity })}\n`;
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
      nodeFlags: nodeFlagsOf(this.config.root),
      cliPath: join(this.config.root, 'bin', 'run.js'),
      configPath: configPath ?? '',
      serviceConfigToml,
      identityPath,
      logLevel: flags['log-level'],
      ...(allowInsecure ? { allowInsecure: true } : {}),
      drainTimeoutS,
      ...(update ? { update } : {}),
      ...(flags.follow !== undefined ? { follow: flags.follow } : {}),
      ...(flags.lines !== undefined ? { lines: flags.lines } : {}),
      ...((root) => (root ? { pluginRoot: root } : {}))(operatorPluginRoot(this.config.dataDir)),
      home: sudoHome() ?? homedir(),
      uid: Number(process.env.SUDO_UID) || (process.getuid?.() ?? 501),
      // The operator who ran `sudo`: the macOS daemon runs as them, with their config and key.
      user: process.env.SUDO_USER || userInfo().username,
    };
  }

  /**
   * Every kind the config names must load in the service: from a built-in plugin, or from one installed
   * with `plugins install` (carried into the service). Says which plugins the service will load.
   */
  async #checkKinds(opts: ServiceOptions): Promise<void> {
    const { config } = await loadConfig({ path: opts.configPath, allowInsecure: true });
    const builtin = await builtinPlugins();
    const installed = await installedPlugins(this.config);
    const loads: string[] = [];
    for (const kind of new Set(config.backends.map((b) => b.kind))) {
      const own = builtin.find((p) => p.kinds?.includes(kind));
      if (own) {
        loads.push(`${kind} (${own.name}, built in)`);
        continue;
      }
      // Installed plugins are carried into the service; a linked one loads only from where the unit sees.
      const added = installed.find((p) => p.plugin?.kinds?.includes(kind));
      if (added && (added.type !== 'link' || !hiddenFromUnit([`${added.root}/`]))) {
        loads.push(`${kind} (${added.name}, ${added.type === 'link' ? 'linked' : 'installed'})`);
        continue;
      }
      const why = added
        ? `its plugin ${added.name} is linked from ${added.root}, which the service's sandbox hides`
        : 'no built-in or installed plugin provides it';
      throw new UsepodError(
        'USEPOD_PLUGIN_NOT_FOUND',
        `kind "${kind}" in ${opts.configPath} would not load in the service: ${why}; install its plugin with \`usepod-agent plugins install <package>\`, then run service install again`,
        { user: true },
      );
    }
    this.out(`The service will load: ${loads.join(', ') || 'no backends'}.`);
  }

  /**
   * A path the service definition could not hold (unsafePath), or a Linux side-by-side folder outside the
   * state folder, refused in one line naming where it came from, before anything is made or planned.
   */
  #checkPaths(opts: ServiceOptions): void {
    const config = `in ${opts.configPath}`;
    const values: [string | undefined, string, string, { executable?: boolean; commandLine?: boolean }][] = [
      [opts.nodePath, 'node', 'install Node.js under a plain path', { executable: true, commandLine: true }],
      [opts.cliPath, 'usepod-agent', 'install it under a plain path', { commandLine: true }],
      [opts.configPath, 'the config', 'move it to a plain path', {}],
      [opts.identityPath, `identity.key_path ${config}`, 'point it at a plain path', {}],
      [
        opts.update?.dir,
        `[update] dir ${config}`,
        'point it at a plain path, or remove it',
        { commandLine: true },
      ],
    ];
    for (const [path, source, fix, role] of values) {
      const why = path === undefined ? undefined : unsafePath(path, { platform: opts.platform, ...role });
      if (why) throw new UsepodError('USEPOD_USAGE', `${source}: ${why}; ${fix}`, { user: true });
    }
    const dir = opts.update?.dir;
    const outside = opts.platform === 'linux' && dir !== undefined ? linuxUpdateDirProblem(dir) : undefined;
    if (outside) {
      throw new UsepodError(
        'USEPOD_USAGE',
        `[update] dir ${config}: ${outside}; remove it (the default is ${LINUX.stateDir}/update) or put it under ${LINUX.stateDir}/, then run service install again`,
        { user: true },
      );
    }
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
    if (this.action === 'install') this.#checkPaths(opts);
    if (this.action === 'install' && !dryRun && opts.identityPath) {
      // The service copies the operator's key; a first install may come before any `run`.
      const { created } = await loadOrCreateIdentity(opts.identityPath);
      if (created) this.out(`Created identity ${opts.identityPath} (mode 0600). Back it up.`);
    } else if (this.action === 'install' && opts.identityPath && existsSync(opts.identityPath)) {
      // A dry run creates nothing, but a key the service could not use is refused as the install would.
      await readIdentity(opts.identityPath);
    }
    if (this.action === 'install' && opts.platform === 'linux') {
      // ExecStart must be reachable inside the unit's sandbox, or the service never starts.
      const hidden = hiddenFromUnit([opts.nodePath, opts.cliPath]);
      if (hidden) {
        const why = `${hidden} is in a folder the service's sandbox hides (ProtectHome, PrivateTmp); install Node.js and usepod-agent system-wide (for example under /usr/local), then run service install again`;
        // A dry run shows the plan anyway, with the reason the real install would refuse it.
        if (dryRun) process.stderr.write(`usepod-agent: warning: ${why}\n`);
        else throw new UsepodError('USEPOD_USAGE', why, { user: true });
      }
    }
    if (this.action === 'install') await this.#checkKinds(opts);
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
