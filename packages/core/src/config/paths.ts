import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Expands a leading `~` the way the 0.3.x agent does, so config files stay portable. */
export function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return p;
}

export const DEFAULT_IDENTITY_PATH = '~/.usepod-agent/identity.key';

export function defaultIdentityPath(): string {
  return resolve(expandHome(DEFAULT_IDENTITY_PATH));
}

/** Where a config lookup looks: the platform, its environment and the home folder (tests pass others). */
export interface PlatformSpec {
  platform?: NodeJS.Platform;
  env?: Record<string, string | undefined>;
  home?: string;
}

/** `$XDG_CONFIG_HOME/usepod-agent`, else `~/.config/usepod-agent`: Linux, and this agent's 0.4.0 elsewhere. */
function xdgConfigDir(env: Record<string, string | undefined>, home: string): string {
  const xdg = env.XDG_CONFIG_HOME;
  return xdg ? join(xdg, 'usepod-agent') : join(home, '.config', 'usepod-agent');
}

/**
 * The config folder of 0.3.x, `directories::ProjectDirs::from("ai", "usepod", "usepod-agent")`
 * (PROTOCOL.md 8): `~/Library/Application Support/ai.usepod.usepod-agent` on macOS,
 * `%APPDATA%\usepod\usepod-agent\config` on Windows, the XDG folder elsewhere. `setup` writes here.
 */
export function platformConfigDir(spec: PlatformSpec = {}): string {
  const platform = spec.platform ?? process.platform;
  const env = spec.env ?? process.env;
  const home = spec.home ?? homedir();
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'ai.usepod.usepod-agent');
  // Native `join`: on Windows it is `path.win32`; elsewhere (tests of this branch) the files are real too.
  if (platform === 'win32')
    return join(env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'usepod', 'usepod-agent', 'config');
  return xdgConfigDir(env, home);
}

/** The agent.toml files a lookup tries before the current folder, in order. */
export function platformConfigFiles(spec: PlatformSpec = {}): string[] {
  const own = join(platformConfigDir(spec), 'agent.toml');
  const xdg = join(xdgConfigDir(spec.env ?? process.env, spec.home ?? homedir()), 'agent.toml');
  return own === xdg ? [own] : [own, xdg];
}
