import { posix, win32 } from 'node:path';

/**
 * What `service <action>` does on each platform, as data: files to write and
 * commands to run. Planning is pure, so tests check the unit texts and the
 * command lines, and `--dry-run` prints exactly what would happen.
 */
export type Platform = 'linux' | 'darwin' | 'win32';
export type ServiceAction = 'install' | 'uninstall' | 'start' | 'stop' | 'restart' | 'status' | 'logs';

export type Step =
  | { kind: 'write'; path: string; content: string; mode: number; why: string }
  /** A file copied as the invoking user (Windows: the key, with no cmd.exe between). */
  | { kind: 'copy'; from: string; path: string; mode: number; why: string }
  | { kind: 'remove'; path: string; why: string }
  | {
      kind: 'run';
      cmd: string;
      args: string[];
      why: string;
      interactive?: boolean;
      allowFailure?: boolean;
      /** A command run as the invoking user whose output is this one's input (`input | cmd`). */
      input?: { cmd: string; args: string[] };
    };

export interface ServiceOptions {
  platform: Platform;
  /** Absolute path of node. */
  nodePath: string;
  /** V8 flags for `run` (the CLI's package.json, `"usepod-agent": { "nodeFlags" }`). */
  nodeFlags?: string[];
  /** Absolute path of the CLI entry (bin/run.js). */
  cliPath: string;
  /** Absolute path of the operator's config file. */
  configPath: string;
  /** The config as TOML, with identity.key_path pointing where the service reads it. */
  serviceConfigToml: string;
  /** The operator's identity file, copied for the service user. */
  identityPath: string;
  /** A non-default log level carried into the service. */
  logLevel?: string | undefined;
  /** `service install --allow-insecure`: the config's ws:// coordinator is accepted by the service too. */
  allowInsecure?: boolean;
  /** `limits.drain_timeout_s`: the service manager must wait longer than this on stop. */
  drainTimeoutS: number;
  /** `logs -f`. */
  follow?: boolean;
  lines?: number;
  /** macOS: the operator's home and uid (the 0.4.0 per-user LaunchAgent, removed on install) and name. */
  home?: string;
  uid?: number;
  /** macOS: the user the system daemon runs as (the operator who ran `sudo service install`). */
  user?: string;
  /** The operator's plugin folder (`plugins install` writes there), carried into the service's. */
  pluginRoot?: string;
  /** `[update] mode = "auto"`: the service runs the launcher over a side-by-side folder (docs/updates.md). */
  update?: ServiceUpdate | undefined;
}

/** What the launcher needs set up: this version installed side by side, `current`, the launcher itself. */
export interface ServiceUpdate {
  /** The side-by-side folder, as the service sees it. */
  dir: string;
  /** The version installed first (the one running `service install`). */
  version: string;
  /** The launcher as plugin-update ships it, copied into `dir`. */
  launcherSource: string;
  /** The npm beside node. */
  npm: string;
  registry?: string | undefined;
}

/** systemd unit name (0.3.x: `usepod-agent.service`). */
export const SERVICE_NAME = 'usepod-agent';
export const LINUX = {
  user: 'usepod',
  stateDir: '/var/lib/usepod-agent',
  configDir: '/etc/usepod-agent',
  unitPath: '/etc/systemd/system/usepod-agent.service',
} as const;
export const LINUX_CONFIG = `${LINUX.configDir}/agent.toml`;
/** Where the service's `run` looks for installed plugins (the unit sets HOME to the state folder). */
export const LINUX_PLUGIN_ROOT = `${LINUX.stateDir}/.local/share/usepod-agent`;
export const LINUX_IDENTITY = `${LINUX.stateDir}/identity.key`;
/** launchd label, and the system daemon's plist, as 0.3.x installs them (PROTOCOL.md 8a). */
export const DARWIN_LABEL = 'ai.usepod.agent';
export const DARWIN_PLIST = `/Library/LaunchDaemons/${DARWIN_LABEL}.plist`;
export const DARWIN_LOG = '/Library/Logs/usepod-agent.log';
/** Windows SCM service name of 0.3.x (PROTOCOL.md 8a); 0.4.0 used `usepod-agent`. */
export const WIN_SERVICE = 'ai.usepod.agent';
const WIN_SERVICE_040 = 'usepod-agent';
export const WIN = { dir: 'C:\\ProgramData\\usepod-agent' } as const;

/** Where the service reads its identity, per platform (written into the service's config). */
export function serviceIdentityPath(o: Pick<ServiceOptions, 'platform' | 'identityPath'>): string {
  if (o.platform === 'linux') return LINUX_IDENTITY;
  if (o.platform === 'win32') return win32.join(WIN.dir, 'identity.key');
  return o.identityPath; // the daemon runs as the operator (UserName), with their files
}

/**
 * One ExecStart word as systemd reads it back (systemd.service, "Command lines"; systemd.unit,
 * "Specifiers"): `%` would start a specifier, so it is doubled; `$` would start a variable in an
 * argument, so it is doubled there, but not in the executable's path, which systemd takes without
 * variables (`$$` stayed two there: systemd-analyze verify). Whitespace, quotes, a backslash or `;` put
 * it in double quotes. A line break cannot be written at all, nor a quote or backslash in the executable
 * (`service install` refuses such a path before it gets here: unsafePath).
 */
export function quoteSystemd(arg: string, executable = false): string {
  const literal = arg.replace(/%/g, '%%').replace(/\$/g, executable ? '$$' : '$$$$');
  return /[\s"'\\;]/.test(literal) ? `"${literal.replace(/(["\\])/g, '\\$1')}"` : literal;
}

/**
 * Why a path cannot go into the service definition on `platform`, or undefined: a control character or
 * line break ends the unit's line, breaks the plist's XML (as U+FFFE and U+FFFF do) or the binPath;
 * systemd refuses a quote or a backslash in the `executable`'s path (the unit would never start); the
 * Windows service manager expands %NAME% on its `commandLine` (binPath is REG_EXPAND_SZ), with no escape.
 */
export function unsafePath(
  path: string,
  o: { platform: Platform; executable?: boolean; commandLine?: boolean },
): string | undefined {
  const shown = JSON.stringify(path.slice(0, 200));
  // biome-ignore lint/suspicious/noControlCharactersInRegex: what is refused is control characters.
  if (/[\u0000-\u001f\u007f\ufffe\uffff]/.test(path))
    return `${shown} has a control character or line break, which a service definition cannot hold`;
  if (o.platform === 'linux' && o.executable && /["'\\]/.test(path))
    return `${shown} has a quote or a backslash, which systemd refuses in the path of the program it starts`;
  if (o.platform === 'win32' && o.commandLine && path.includes('%'))
    return `${shown} has a %, which the Windows service manager would read as the start of a %VARIABLE%`;
  return undefined;
}

/**
 * Linux: why `[update] dir` cannot be the service's side-by-side folder, or undefined. It must be inside
 * the state folder: the sandbox lets the service write nowhere else (ProtectSystem=strict), and the
 * folder is set up as the service user, who could not make one elsewhere.
 */
export function linuxUpdateDirProblem(dir: string): string | undefined {
  const inside = posix.normalize(dir).startsWith(`${LINUX.stateDir}/`) && posix.isAbsolute(dir);
  return inside
    ? undefined
    : `${JSON.stringify(dir.slice(0, 200))} is not inside ${LINUX.stateDir}/, the only folder the service may write`;
}

/** What the service manager starts: the CLI's `run`, or the launcher that runs `current`'s. */
function execArgs(o: ServiceOptions, configPath: string): string[] {
  // The executable comes first: systemd reads it apart from the arguments (quoteSystemd).
  const run = runArgs(o, configPath);
  // V8 reads these only at start (decision 0008), so they go on the command line; the launcher reads a
  // release's own from its package.json.
  if (!o.update) return [o.nodePath, ...(o.nodeFlags ?? []), o.cliPath, ...run];
  const path = o.platform === 'win32' ? win32 : posix;
  return [o.nodePath, path.join(o.update.dir, 'launcher.mjs'), '--dir', o.update.dir, '--', ...run];
}

/**
 * Windows: the side-by-side folder is made by this CLI's `update --setup` over the service's config (its
 * identity, so the same folder): it installs this version with npm's own script run by node.exe (no
 * npm.cmd through cmd.exe), points `current` at it as a directory junction (no admin rights needed to
 * follow it; a link cannot be renamed over another there) and copies the launcher in, all in Node, so no
 * path goes through cmd.exe's quoting.
 */
function windowsUpdateSteps(o: ServiceOptions, config: string): Step[] {
  const u = o.update;
  if (!u) return [];
  return [
    {
      kind: 'run',
      cmd: o.nodePath,
      args: [o.cliPath, 'update', '--setup', '--config', config],
      why: `this version (${u.version}) installed side by side into ${win32.join(u.dir, 'versions', u.version)}, \`current\` (a directory junction) pointed at it, and the launcher copied to ${win32.join(u.dir, 'launcher.mjs')}`,
      interactive: true,
    },
  ];
}

/**
 * The side-by-side folder for the launcher: this version installed into versions/<v> with the npm beside
 * node, `current` pointed at it (a new link renamed over the old), the launcher copied in; each command
 * run `as` whoever must own the folder (Linux: the service user).
 */
function updateSteps(o: ServiceOptions, as: (argv: string[]) => Command = asInvoker): Step[] {
  const u = o.update;
  if (!u) return [];
  const versions = posix.join(u.dir, 'versions');
  const tmp = posix.join(u.dir, '.current.tmp');
  const npm = [u.npm, 'install', '--prefix', posix.join(versions, u.version), '--no-audit', '--no-fund'];
  const registry = u.registry ? ['--registry', u.registry] : [];
  return [
    run(as(['install', '-d', '-m', '0700', u.dir, versions]), 'the side-by-side folder of updates'),
    {
      ...run(
        as([...npm, '--omit=dev', ...registry, `usepod-agent@${u.version}`]),
        `this version (${u.version}) installed side by side, for the launcher to start`,
      ),
      interactive: true,
    },
    ...(o.platform === 'linux'
      ? [
          run(as(['ln', '-sfn', posix.join('versions', u.version), tmp]), 'the current link'),
          run(as(['mv', '-Tf', tmp, posix.join(u.dir, 'current')]), 'put in place at once'),
        ]
      : // BSD ln: -h replaces the link itself, never a folder it points at.
        [
          run(
            as(['ln', '-sfh', posix.join('versions', u.version), posix.join(u.dir, 'current')]),
            'the current link',
          ),
        ]),
    run(
      as(['install', '-m', '0755', u.launcherSource, posix.join(u.dir, 'launcher.mjs')]),
      'the launcher, which releases never change',
    ),
  ];
}

type Command = { cmd: string; args: string[] };

function run(c: Command, why: string): Step & { kind: 'run' } {
  return { kind: 'run', ...c, why };
}

/** A command run as the user running `service install` (root, through sudo). */
function asInvoker([cmd, ...args]: string[]): Command {
  return { cmd: cmd!, args };
}

/**
 * Linux: a command run as the service user. What goes into the state folder, which that user owns, is
 * written as them, so a link they planted there (a compromised agent) leads only where they could write
 * anyway: run as root, `install -d -o` followed such a link and gave its target to them, and npm read
 * the `.npmrc` they left in its prefix.
 */
function asService(argv: string[]): Command {
  return { cmd: 'runuser', args: ['-u', LINUX.user, '--', ...argv] };
}

function runArgs(o: ServiceOptions, configPath: string): string[] {
  return [
    'run',
    '--config',
    configPath,
    ...(o.logLevel && o.logLevel !== 'info' ? ['--log-level', o.logLevel] : []),
    ...(o.allowInsecure ? ['--allow-insecure'] : []),
  ];
}

/** What the service manager waits on stop: longer than the drain, whole seconds (a plist's integer). */
function stopTimeoutS(o: ServiceOptions): number {
  return Math.ceil(o.drainTimeoutS) + 15;
}

export function systemdUnit(o: ServiceOptions): string {
  const exec = execArgs(o, LINUX_CONFIG)
    .map((a, i) => quoteSystemd(a, i === 0))
    .join(' ');
  return `# Written by \`usepod-agent service install\`. Remove with \`usepod-agent service uninstall\`.
[Unit]
Description=Use Pod provider agent
Documentation=https://usepod.ai/docs/agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${LINUX.user}
Group=${LINUX.user}
WorkingDirectory=${LINUX.stateDir}
Environment=HOME=${LINUX.stateDir}
Environment=NODE_ENV=production
ExecStart=${exec}
Restart=always
RestartSec=5
# SIGTERM drains jobs in flight for limits.drain_timeout_s; systemd must wait longer than that.
KillSignal=SIGTERM
TimeoutStopSec=${stopTimeoutS(o)}
StandardOutput=journal
StandardError=journal
SyslogIdentifier=${SERVICE_NAME}

# Hardening: the agent needs the network and its own state folder, nothing else.
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictSUIDSGID=true
RestrictRealtime=true
RestrictNamespaces=true
LockPersonality=true
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
UMask=0077
ReadWritePaths=${LINUX.stateDir}
ReadOnlyPaths=${LINUX.configDir}

[Install]
WantedBy=multi-user.target
`;
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function launchdPlist(o: ServiceOptions): string {
  const log = DARWIN_LOG;
  const args = execArgs(o, o.configPath);
  // A system daemon runs as root unless told otherwise: the operator's own user is enough.
  const user = o.user ? `  <key>UserName</key>\n  <string>${xml(o.user)}</string>\n` : '';
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${DARWIN_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${args.map((a) => `    <string>${xml(a)}</string>`).join('\n')}
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
${user}  <key>ExitTimeOut</key>
  <integer>${stopTimeoutS(o)}</integer>
  <key>ProcessType</key>
  <string>Background</string>
  <key>StandardOutPath</key>
  <string>${xml(log)}</string>
  <key>StandardErrorPath</key>
  <string>${xml(log)}</string>
</dict>
</plist>
`;
}

function darwinPaths(o: ServiceOptions) {
  return {
    plist: DARWIN_PLIST,
    log: DARWIN_LOG,
    target: 'system',
    /** The per-user LaunchAgent 0.4.0 installed: removed on install, so one key runs once. */
    oldAgent: posix.join(o.home ?? '~', 'Library/LaunchAgents', `${DARWIN_LABEL}.plist`),
    oldTarget: `gui/${o.uid ?? 501}/${DARWIN_LABEL}`,
  };
}

/**
 * One argument of binPath as the program reads it back (CommandLineToArgvW, the C runtime's rules):
 * quoted when it holds whitespace, a backslash or a quote; a quote is escaped, and the backslashes before
 * a quote, or before the closing one (a folder's trailing `\`), are doubled so they stay backslashes.
 */
export function winArg(s: string): string {
  if (s !== '' && !/[\s"\\]/.test(s)) return s;
  return `"${s.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

/** The steps of one action on one platform. */
export function planService(action: ServiceAction, o: ServiceOptions): Step[] {
  if (o.platform === 'linux') return planLinux(action, o);
  if (o.platform === 'darwin') return planDarwin(action, o);
  return planWindows(action, o);
}

function planLinux(action: ServiceAction, o: ServiceOptions): Step[] {
  const unit = `${SERVICE_NAME}.service`;
  switch (action) {
    case 'install':
      return [
        {
          kind: 'run',
          cmd: 'sh',
          args: [
            '-c',
            `id -u ${LINUX.user} >/dev/null 2>&1 || useradd --system --home-dir ${LINUX.stateDir} --shell /usr/sbin/nologin ${LINUX.user}`,
          ],
          why: `create the system user "${LINUX.user}" if it does not exist`,
        },
        {
          kind: 'run',
          cmd: 'install',
          args: ['-d', '-o', LINUX.user, '-g', LINUX.user, '-m', '0700', LINUX.stateDir],
          why: 'state folder',
        },
        { kind: 'run', cmd: 'install', args: ['-d', '-m', '0755', LINUX.configDir], why: 'config folder' },
        // 0600 and the service user's, as the key: the config may hold the enrollment code, and a copy
        // others could read made the agent's own loader warn of it at every start.
        {
          kind: 'write',
          path: LINUX_CONFIG,
          content: o.serviceConfigToml,
          mode: 0o600,
          why: `the config, from ${o.configPath}`,
        },
        {
          kind: 'run',
          cmd: 'chown',
          args: [`${LINUX.user}:${LINUX.user}`, LINUX_CONFIG],
          why: 'the config, readable by the service user only (it may hold the enrollment code)',
        },
        // Read as root (the operator's key), written as the service user into its folder: a temp file only
        // it can read (umask), renamed over the key once whole, never an empty one.
        {
          ...run(
            asService([
              'sh',
              '-c',
              'umask 077 && cat >"$1.new" && test -s "$1.new" && mv -f "$1.new" "$1"',
              'sh',
              LINUX_IDENTITY,
            ]),
            'the identity key, readable by the service user only',
          ),
          input: { cmd: 'cat', args: ['--', o.identityPath] },
        },
        // The operator's installed plugins go where the service looks: ProtectHome hides the operator's.
        // Read as root (links followed, as `plugins link` made them), unpacked as the service user.
        ...(o.pluginRoot
          ? ([
              run(asService(['mkdir', '-p', LINUX_PLUGIN_ROOT]), "the service's plugin folder"),
              {
                ...run(
                  asService(['tar', '-C', LINUX_PLUGIN_ROOT, '-xf', '-']),
                  `the plugins installed with \`plugins install\` (from ${o.pluginRoot})`,
                ),
                input: { cmd: 'tar', args: ['-C', o.pluginRoot, '-chf', '-', '.'] },
              },
            ] satisfies Step[])
          : []),
        ...updateSteps(o, asService),
        {
          kind: 'write',
          path: LINUX.unitPath,
          content: systemdUnit(o),
          mode: 0o644,
          why: 'the systemd unit',
        },
        { kind: 'run', cmd: 'systemctl', args: ['daemon-reload'], why: 'load the unit' },
        { kind: 'run', cmd: 'systemctl', args: ['enable', unit], why: 'start at boot' },
        // restart, not start: an agent already running under this unit (0.3.x) is replaced, never doubled.
        {
          kind: 'run',
          cmd: 'systemctl',
          args: ['restart', unit],
          why: 'start now, replacing a running agent',
        },
      ];
    case 'uninstall':
      return [
        {
          kind: 'run',
          cmd: 'systemctl',
          args: ['disable', '--now', unit],
          why: 'stop and disable',
          allowFailure: true,
        },
        { kind: 'remove', path: LINUX.unitPath, why: 'the unit file' },
        { kind: 'run', cmd: 'systemctl', args: ['daemon-reload'], why: 'forget the unit' },
      ];
    case 'start':
    case 'stop':
    case 'restart':
      return [{ kind: 'run', cmd: 'systemctl', args: [action, unit], why: `${action} the service` }];
    case 'status':
      return [
        {
          kind: 'run',
          cmd: 'systemctl',
          args: ['status', '--no-pager', unit],
          why: 'show the status',
          interactive: true,
        },
      ];
    case 'logs':
      return [
        {
          kind: 'run',
          cmd: 'journalctl',
          args: ['-u', unit, '-n', String(o.lines ?? 200), '--no-pager', ...(o.follow ? ['-f'] : [])],
          why: 'show the logs',
          interactive: true,
        },
      ];
  }
}

function planDarwin(action: ServiceAction, o: ServiceOptions): Step[] {
  const p = darwinPaths(o);
  const service = `${p.target}/${DARWIN_LABEL}`;
  switch (action) {
    case 'install':
      return [
        // An agent already running under this label (0.3.x, or an earlier install) is stopped first.
        {
          kind: 'run',
          cmd: 'launchctl',
          args: ['bootout', service],
          why: 'stop a running agent',
          allowFailure: true,
        },
        {
          kind: 'run',
          cmd: 'launchctl',
          args: ['bootout', p.oldTarget],
          why: 'stop the per-user agent of 0.4.0, if any',
          allowFailure: true,
        },
        { kind: 'remove', path: p.oldAgent, why: 'the per-user agent of 0.4.0, if any' },
        ...updateSteps(o),
        { kind: 'write', path: p.plist, content: launchdPlist(o), mode: 0o644, why: 'the launchd daemon' },
        { kind: 'run', cmd: 'launchctl', args: ['bootstrap', p.target, p.plist], why: 'load and start it' },
      ];
    case 'uninstall':
      return [
        {
          kind: 'run',
          cmd: 'launchctl',
          args: ['bootout', service],
          why: 'stop and unload',
          allowFailure: true,
        },
        { kind: 'remove', path: p.plist, why: 'the launchd daemon' },
      ];
    case 'start':
      return [{ kind: 'run', cmd: 'launchctl', args: ['kickstart', service], why: 'start' }];
    case 'stop':
      return [
        {
          kind: 'run',
          cmd: 'launchctl',
          args: ['kill', 'SIGTERM', service],
          why: 'stop (launchd restarts it unless unloaded)',
        },
      ];
    case 'restart':
      return [{ kind: 'run', cmd: 'launchctl', args: ['kickstart', '-k', service], why: 'restart' }];
    case 'status':
      return [
        {
          kind: 'run',
          cmd: 'launchctl',
          args: ['print', service],
          why: 'show the status',
          interactive: true,
        },
      ];
    case 'logs':
      return [
        {
          kind: 'run',
          cmd: 'tail',
          args: ['-n', String(o.lines ?? 200), ...(o.follow ? ['-f'] : []), p.log],
          why: 'show the logs',
          interactive: true,
        },
      ];
  }
}

function planWindows(action: ServiceAction, o: ServiceOptions): Step[] {
  const config = win32.join(WIN.dir, 'agent.toml');
  const log = win32.join(WIN.dir, 'agent.log');
  // With [update] mode = "auto", the launcher over the side-by-side folder, as on Linux and macOS.
  const binPath = execArgs(o, config).map(winArg).join(' ');
  switch (action) {
    case 'install':
      return [
        // One key runs once: an agent under the 0.3.x name (this one) or 0.4.0's is stopped and removed.
        ...[WIN_SERVICE, WIN_SERVICE_040].flatMap((name): Step[] => [
          {
            kind: 'run',
            cmd: 'sc.exe',
            args: ['stop', name],
            why: `stop ${name}, if installed`,
            allowFailure: true,
          },
          {
            kind: 'run',
            cmd: 'sc.exe',
            args: ['delete', name],
            why: `remove ${name}, if installed`,
            allowFailure: true,
          },
        ]),
        {
          kind: 'run',
          cmd: 'cmd.exe',
          args: ['/c', 'if not exist', WIN.dir, 'mkdir', WIN.dir],
          why: 'data folder',
        },
        // A folder made under ProgramData inherits read access for every local user (BUILTIN\Users): the
        // key and a config that may hold the enrollment code would be theirs to read. SYSTEM (the
        // service) and Administrators only, inherited by what is written in it; SIDs, not names, which
        // Windows translates.
        {
          kind: 'run',
          cmd: 'icacls.exe',
          args: [WIN.dir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'],
          why: 'the data folder, for the service and administrators only',
        },
        {
          kind: 'write',
          path: config,
          content: o.serviceConfigToml,
          mode: 0o644,
          why: `the config, from ${o.configPath}`,
        },
        // Copied by this process, not `cmd.exe /c copy`: cmd.exe would run what follows a `&` in the path.
        {
          kind: 'copy',
          from: o.identityPath,
          path: win32.join(WIN.dir, 'identity.key'),
          mode: 0o600,
          why: 'the identity key',
        },
        ...windowsUpdateSteps(o, config),
        {
          kind: 'run',
          cmd: 'sc.exe',
          args: [
            'create',
            WIN_SERVICE,
            'binPath=',
            binPath,
            'start=',
            'auto',
            'DisplayName=',
            'Use Pod provider agent',
          ],
          why: 'register the service',
        },
        {
          kind: 'run',
          cmd: 'reg.exe',
          args: [
            'add',
            `HKLM\\SYSTEM\\CurrentControlSet\\Services\\${WIN_SERVICE}`,
            '/v',
            'Environment',
            '/t',
            'REG_MULTI_SZ',
            '/d',
            `USEPOD_AGENT_LOG_FILE=${log}`,
            '/f',
          ],
          why: 'log to a file (services have no console)',
        },
        {
          kind: 'run',
          cmd: 'sc.exe',
          args: ['failure', WIN_SERVICE, 'reset=', '86400', 'actions=', 'restart/5000'],
          why: 'restart on failure',
        },
        { kind: 'run', cmd: 'sc.exe', args: ['start', WIN_SERVICE], why: 'start it' },
      ];
    case 'uninstall':
      return [
        { kind: 'run', cmd: 'sc.exe', args: ['stop', WIN_SERVICE], why: 'stop', allowFailure: true },
        { kind: 'run', cmd: 'sc.exe', args: ['delete', WIN_SERVICE], why: 'remove the service' },
      ];
    case 'start':
    case 'stop':
      return [{ kind: 'run', cmd: 'sc.exe', args: [action, WIN_SERVICE], why: action }];
    case 'restart':
      return [
        { kind: 'run', cmd: 'sc.exe', args: ['stop', WIN_SERVICE], why: 'stop', allowFailure: true },
        { kind: 'run', cmd: 'sc.exe', args: ['start', WIN_SERVICE], why: 'start' },
      ];
    case 'status':
      return [
        {
          kind: 'run',
          cmd: 'sc.exe',
          args: ['query', WIN_SERVICE],
          why: 'show the status',
          interactive: true,
        },
      ];
    case 'logs':
      return [
        {
          kind: 'run',
          cmd: 'powershell.exe',
          args: [
            '-NoProfile',
            '-Command',
            `Get-Content -Path '${log}' -Tail ${o.lines ?? 200}${o.follow ? ' -Wait' : ''}`,
          ],
          why: 'show the logs',
          interactive: true,
        },
      ];
  }
}

/** The file whose presence means "installed". */
export function installedMarker(o: Pick<ServiceOptions, 'platform' | 'home'>): string | undefined {
  if (o.platform === 'linux') return LINUX.unitPath;
  if (o.platform === 'darwin') return DARWIN_PLIST;
  return undefined; // Windows: asked through `sc.exe query`
}

/** Folders a hardened unit hides from the service (ProtectHome, PrivateTmp). */
const HIDDEN = ['/home/', '/root/', '/run/user/', '/tmp/', '/var/tmp/'];

/** The first of these paths the systemd unit would hide from its own ExecStart, if any. */
export function hiddenFromUnit(paths: readonly string[]): string | undefined {
  return paths.find((p) => HIDDEN.some((h) => p.startsWith(h)));
}
