import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import * as Flags from '@oclif/core/flags';
import { engineText, readBoundedText, UsepodError } from '@usepod-agent/core';
import { readStatusToken, replaceFileSync, statusTokenPath } from '@usepod-agent/core/cli';
import { BaseCommand, jsonFlag } from '../base.js';
import { squatter } from '../port-owner.js';

/** The command that opens a URL in the desktop's browser, by platform. */
function opener(): { cmd: string; args: string[] } {
  if (process.platform === 'darwin') return { cmd: 'open', args: [] };
  if (process.platform === 'win32') return { cmd: 'cmd', args: ['/c', 'start', '""'] };
  return { cmd: 'xdg-open', args: [] };
}

export default class Dashboard extends BaseCommand {
  static override summary = 'Print (or open) the address of the running agent’s dashboard, token included.';
  static override description =
    'The dashboard is served by the agent at observability.prometheus_addr. The address carries the status token (status.token beside the identity key, made when the agent starts): whoever has it can pause the agent, so do not share it. It is in the fragment (#token=), which a browser never sends to a server; the page keeps it for the tab and drops it from the address bar.';
  static override examples = [
    '<%= config.bin %> dashboard',
    '<%= config.bin %> dashboard --open',
    '<%= config.bin %> dashboard --fleet',
  ];
  static override flags = {
    open: Flags.boolean({
      summary:
        'Open it in the desktop’s browser (xdg-open, open, start), through a private file that redirects.',
      default: false,
    }),
    fleet: Flags.boolean({
      summary: 'Print the fleet table ([dashboard] fleet) the running agent shows, instead of the address.',
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
    let token = readStatusToken(config.identity.key_path, tokenFile);
    if (!token && (await nudged(browsable(addr)))) {
      // A running agent that could not make it (a full disk) makes it on its next request, if it can now.
      token = readStatusToken(config.identity.key_path, tokenFile);
    }
    if (!token) {
      throw new UsepodError(
        'USEPOD_USAGE',
        `no status token at ${statusTokenPath(config.identity.key_path, tokenFile)}: start the agent once (it makes it; a running agent whose disk was full says so in its log), and run this as the agent's user`,
        { user: true },
      );
    }
    const tokenPath = statusTokenPath(config.identity.key_path, tokenFile);
    if (flags.fleet) {
      refuseSquatter(browsable(addr), tokenPath);
      const rows = await fleet(browsable(addr), token);
      if (flags.json) return this.printJson(rows);
      for (const line of fleetTable(rows)) this.out(line);
      return;
    }
    // A fragment: the browser keeps it, no server (nor a proxy, a log, a Referer) ever receives it.
    const url = `http://${browsable(addr)}/#token=${token}`;
    if (flags.json) return this.printJson({ url });
    this.out(url);
    if (!flags.open) return;
    refuseSquatter(browsable(addr), tokenPath);
    // The browser is handed a file that redirects, not the address: a command line is readable by every
    // local user (`ps`) for as long as the opener runs, the file only by this one.
    let page: string;
    try {
      page = writeRedirect(dirname(tokenPath), url);
    } catch (err) {
      // A full disk: the address is printed above, so this is a step the operator can take by hand.
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      this.out(
        `could not write ${join(dirname(tokenPath), 'dashboard.html')} for the browser (${why}): open the address above in a browser`,
      );
      return;
    }
    const o = opener();
    const child = spawn(o.cmd, [...o.args, page], { stdio: 'ignore', detached: true });
    child.on('error', () => this.out(`could not run ${o.cmd}: open the address above in a browser`));
    child.unref();
  }
}

/**
 * `dashboard.html` beside the status token (a folder only the agent's user reads), 0600, made under a
 * fresh name and renamed over the old one (a link planted there is replaced, never followed).
 */
function writeRedirect(dir: string, url: string): string {
  const path = join(dir, 'dashboard.html');
  // The URL is ours (a host:port and a hex token); still escaped for an attribute and a script string.
  const attr = url.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  const html = `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${attr}"><title>usepod-agent</title><a href="${attr}">usepod-agent dashboard</a><script>location.replace(${JSON.stringify(url).replace(/</g, '\\u003c')})</script>\n`;
  // Whole or failed, and no copy left on a disk that had no room: a page cut short would carry half a token.
  replaceFileSync(path, html);
  return path;
}

/** The token is sent (a request, a browser opened) only to a port held by the agent's user. */
function refuseSquatter(addr: string, tokenPath: string): void {
  const s = squatter(addr, tokenPath);
  if (s) {
    throw new UsepodError(
      'USEPOD_AGENT_NOT_RUNNING',
      `${addr} is held by user ${s.uid}, not by the agent's user (${s.owner}): the status token is not sent there; start the agent, or stop that process`,
    );
  }
}

/** One probe of the agent (no token sent): whether it answered. */
async function nudged(addr: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${addr}/healthz`, { signal: AbortSignal.timeout(3_000) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/** An address a browser can reach: a wildcard bind is reached on loopback. */
function browsable(addr: string): string {
  return addr.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
}

interface FleetRow {
  name: string;
  url: string;
  reachable: boolean;
  error: string | null;
  title: string | null;
  models: string[];
  in_flight: number | null;
  today_usdc: number | null;
  last_job: { at: string; model: string; outcome: string } | null;
  alerts: string[];
}

/** The running agent's fleet rows (`/api/fleet`), bounded in time and size. */
async function fleet(addr: string, token: string): Promise<FleetRow[]> {
  let res: Response;
  const deadline = AbortSignal.timeout(15_000);
  try {
    res = await fetch(`http://${addr}/api/fleet`, {
      headers: { authorization: `Bearer ${token}` },
      signal: deadline,
      // The token never follows a redirect to another address.
      redirect: 'error',
    });
  } catch {
    throw new UsepodError('USEPOD_AGENT_NOT_RUNNING', `no agent answers at ${addr}`);
  }
  const text = await readBoundedText(res, 4 * 1024 * 1024, deadline).catch(() => undefined);
  let body: { rows?: unknown } | undefined;
  try {
    body = res.ok && text !== undefined ? (JSON.parse(text) as { rows?: unknown }) : undefined;
  } catch {
    body = undefined;
  }
  if (!body || typeof body !== 'object') {
    throw new UsepodError(
      'USEPOD_AGENT_NOT_RUNNING',
      `${addr}/api/fleet answered ${res.status} without a fleet table: is the dashboard on?`,
    );
  }
  return Array.isArray(body.rows)
    ? (body.rows.filter((r) => !!r && typeof r === 'object') as FleetRow[])
    : [];
}

/** One line per agent; every string folded (another agent's answer reaches this terminal). */
function fleetTable(rows: FleetRow[]): string[] {
  const f = (v: unknown, max = 60) => engineText(String(v ?? '-'), max);
  const cells = rows.map((r) => [
    f(r.name, 40),
    r.reachable ? f(r.title, 50) : f(r.error ?? 'unreachable', 50),
    f((Array.isArray(r.models) ? r.models.join(', ') : '') || '-', 50),
    typeof r.in_flight === 'number' ? String(r.in_flight) : '-',
    typeof r.today_usdc === 'number' ? r.today_usdc.toFixed(4) : '-',
    r.last_job ? f(`${r.last_job.model} ${r.last_job.outcome} ${r.last_job.at}`, 60) : '-',
    f((Array.isArray(r.alerts) ? r.alerts.join('; ') : '') || '-', 80),
  ]);
  const head = ['AGENT', 'STATE', 'MODELS', 'IN FLIGHT', 'TODAY USDC', 'LAST JOB', 'ALERTS'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [head, ...cells].map((c) =>
    c
      .map((x, i) => x.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}
