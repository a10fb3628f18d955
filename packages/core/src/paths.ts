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

/** `$XDG_CONFIG_HOME/usepod-agent`, else `~/.config/usepod-agent` (PROTOCOL.md section 8). */
export function platformConfigDir(): string {
  const xdg = process.env.XDG_CONFIG_HOME;
  return xdg ? join(xdg, 'usepod-agent') : join(homedir(), '.config', 'usepod-agent');
}
