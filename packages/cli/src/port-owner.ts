import { readFileSync, statSync } from 'node:fs';

/**
 * The users listening on a TCP port of this machine (Linux: /proc/net/tcp and tcp6), for the commands
 * that hand the status token to the agent's loopback address: while the agent is down, another local
 * user can hold its port (a squatter) and must not be sent the token. Undefined: cannot tell (another
 * OS, /proc hidden).
 */
export function listenerUids(port: number): number[] | undefined {
  const uids: number[] = [];
  let read = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    read = true;
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...; st 0A is LISTEN.
      const f = line.trim().split(/\s+/);
      const local = f[1];
      if (!local || f[3] !== '0A') continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
      const uid = Number(f[7]);
      if (Number.isInteger(uid)) uids.push(uid);
    }
  }
  return read ? uids : undefined;
}

/**
 * Another user's process holding `addr`'s port when `addr` is this machine (loopback or a wildcard): the
 * token must not be sent there. Another: neither the token file's owner (the agent's user), nor this
 * command's user, nor root.
 */
export function squatter(addr: string, tokenPath: string): { uid: number; owner: number } | undefined {
  const m = /^(?:127\.\d+\.\d+\.\d+|localhost|\[::1\]|0\.0\.0\.0|\[::\]):(\d+)$/i.exec(addr);
  if (!m) return undefined;
  let owner: number;
  try {
    owner = statSync(tokenPath).uid;
  } catch {
    return undefined;
  }
  // Root, this user and the file's owner could read the token anyway (a container's port proxy is root's).
  const trusted = new Set([owner, 0, process.getuid?.() ?? owner]);
  const uid = listenerUids(Number(m[1]))?.find((u) => !trusted.has(u));
  return uid === undefined ? undefined : { uid, owner };
}
