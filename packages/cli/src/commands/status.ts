import * as Flags from '@oclif/core/flags';
import { type AgentStatus, engineText, loadConfig, readBoundedText, UsepodError } from '@usepod-agent/core';
import {
  DEFAULT_PROMETHEUS_ADDR,
  findConfigFile,
  readStatusToken,
  statusTokenPath,
} from '@usepod-agent/core/cli';
import { BaseCommand, jsonFlag } from '../base.js';
import { squatter } from '../port-owner.js';
import { localTime } from '../when.js';

interface LedgerWindow {
  served: number;
  missed: number;
  failed: number;
  earnings_usdc: number;
}
/** The ledger plugin's status section: today and the last 7 days. */
interface LedgerSection {
  file: string | null;
  /** Why the ledger cannot be written now (its records wait, the agent serves on). */
  failing?: string;
  pending?: number;
  today?: LedgerWindow;
  last_7_days?: LedgerWindow;
}

/** More than any agent's /status (a few KB per backend): a body past it is not one. */
const MAX_STATUS_BYTES = 4 * 1024 * 1024;

/** The fields render() relies on, with their types: anything else is not an agent's status. */
function isStatus(v: unknown): v is AgentStatus {
  const s = v as Partial<AgentStatus> | null;
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  return (
    !!s &&
    typeof s === 'object' &&
    typeof s.state === 'string' &&
    Array.isArray(s.backends) &&
    Array.isArray(s.models) &&
    !!s.jobs &&
    num(s.jobs.served) &&
    !!s.earnings &&
    num(s.earnings.usdc) &&
    !!s.heartbeat &&
    !!s.tokens &&
    num(s.uptime_s)
  );
}

export default class Status extends BaseCommand {
  static override summary =
    'Show what the running agent is doing: connection, backends, jobs, speed, earnings.';
  static override description =
    'Asks the running agent at observability.prometheus_addr (from --config or the default config file) for its /status, and prints it. --watch redraws it every --interval seconds.';
  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --watch',
    '<%= config.bin %> status --json',
    '<%= config.bin %> status --addr 127.0.0.1:9090',
  ];
  static override flags = {
    addr: Flags.string({
      summary: 'host:port of the agent status server (overrides the config).',
      helpValue: 'HOST:PORT',
    }),
    watch: Flags.boolean({ char: 'w', summary: 'Redraw live until Ctrl-C.', default: false }),
    interval: Flags.integer({ summary: 'Seconds between redraws with --watch.', default: 2, min: 1 }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Status);
    const config = await this.#config(flags.config);
    const addr = flags.addr ?? config?.observability.prometheus_addr ?? DEFAULT_PROMETHEUS_ADDR;
    if (addr === '' || addr === 'off') {
      throw new UsepodError(
        'USEPOD_USAGE',
        'observability.prometheus_addr is "off": the agent serves no status; set it, or pass --addr',
        {
          user: true,
        },
      );
    }
    // The agent's own token, needed only when it listens beyond loopback, and sent only to the configured
    // address: on loopback whoever squats the port while the agent is down would get it for nothing.
    // A wildcard address is this machine too: another user holding its port (the agent down) is not sent it.
    const token =
      config &&
      (!flags.addr || flags.addr === config.observability.prometheus_addr) &&
      !loopbackAddr(addr) &&
      !squatter(addr, statusTokenPath(config.identity.key_path, config.observability.token_file))
        ? readStatusToken(config.identity.key_path, config.observability.token_file)
        : undefined;
    const fetchStatus = async (): Promise<AgentStatus> => {
      let res: Response;
      const deadline = AbortSignal.timeout(3_000);
      try {
        res = await fetch(`http://${addr}/status`, {
          signal: deadline,
          ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
        });
      } catch {
        throw new UsepodError('USEPOD_AGENT_NOT_RUNNING', `no agent answers at ${addr}`);
      }
      if (res.status === 401) {
        throw new UsepodError(
          'USEPOD_USAGE',
          `${addr}/status asks for the status token: run status as the agent's user (it reads status.token beside the key), or with --config naming its agent.toml`,
          { user: true },
        );
      }
      if (!res.ok) throw new UsepodError('USEPOD_USAGE', `${addr}/status answered ${res.status}`);
      // Whatever answers on that port (another user's process while the agent is down) is untrusted: read at
      // most MAX_STATUS_BYTES, and a document that is not an agent's status is one coded line.
      const text = await readBoundedText(res, MAX_STATUS_BYTES, deadline).catch(() => undefined);
      let parsed: unknown;
      try {
        parsed = text === undefined ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (!isStatus(parsed)) {
        throw new UsepodError(
          'USEPOD_AGENT_NOT_RUNNING',
          `what answers at ${addr} is not a usepod-agent status`,
        );
      }
      return foldStrings(parsed) as AgentStatus;
    };
    const show = (s: AgentStatus) => {
      try {
        return flags.json ? JSON.stringify(s, null, 2) : render(s, addr);
      } catch {
        throw new UsepodError(
          'USEPOD_AGENT_NOT_RUNNING',
          `what answers at ${addr} is not a usepod-agent status`,
        );
      }
    };
    if (!flags.watch) {
      const s = await fetchStatus();
      if (flags.json) this.printJson(s);
      else this.out(show(s));
      return;
    }
    for (;;) {
      const text = await fetchStatus().then(
        (s) => show(s),
        (err: Error) => `usepod-agent: ${err.message}`,
      );
      // Clear the screen and home the cursor, then draw.
      process.stdout.write(`\x1b[2J\x1b[H${text}\n\n(refreshing every ${flags.interval}s, Ctrl-C to quit)\n`);
      await new Promise((r) => setTimeout(r, flags.interval * 1000));
    }
  }

  async #config(path: string | undefined) {
    const file = path ?? (await findConfigFile());
    if (!file) return undefined;
    return (await loadConfig({ path: file, allowInsecure: true })).config;
  }
}

/** `127.x.x.x:PORT`, `localhost:PORT`, `[::1]:PORT`. */
function loopbackAddr(addr: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/i.test(addr);
}

/** Every string (keys too) folded and bounded: nothing from /status reaches the terminal raw. */
function foldStrings(v: unknown): unknown {
  if (typeof v === 'string') return engineText(v, 300);
  if (Array.isArray(v)) return v.map(foldStrings);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [engineText(k, 60), foldStrings(x)]));
  }
  return v;
}

function duration(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

const usdc = (w: LedgerWindow) =>
  `${w.earnings_usdc.toFixed(6)} USDC (${w.served} served, ${w.missed} missed, ${w.failed} failed)`;

/** A plugin's status section as `key value` lines, every value folded (it may quote a tool or an engine). */
function sectionLines(name: string, value: unknown): string[] {
  if (value === null || typeof value !== 'object')
    return [`  ${name.padEnd(13)} ${engineText(String(value), 200)}`];
  const flat = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${engineText(typeof v === 'object' ? JSON.stringify(v) : String(v), 200)}`);
  return [`  ${name.padEnd(13)} ${flat.join('  ')}`];
}

export function render(s: AgentStatus, addr: string): string {
  const lines: string[] = [];
  const state = s.connected ? 'online' : s.state;
  lines.push(
    `usepod-agent ${s.agent_version}  ${state.toUpperCase()}  up ${duration(s.uptime_s)}  (${addr})`,
  );
  for (const h of s.holds ?? []) {
    const until = h.until ? ` until ${localTime(h.until)}` : '';
    const how = h.by === 'owner' ? ' (usepod-agent resume)' : '';
    // A hold scoped to backends (a hot GPU's engines) withdraws theirs only: the agent serves the rest.
    const scope = h.backends ? ` (withdrawn: ${engineText(h.backends.join(', '), 200)})` : '';
    const what = h.backends ? 'HELD   ' : 'PAUSED ';
    lines.push(
      `  ${what}       by ${engineText(h.by, 40)}: ${engineText(h.reason, 200)}${until}${how}${scope}`,
    );
  }
  lines.push(`  coordinator   ${s.coordinator}`);
  lines.push(`  provider      ${s.provider_id ?? '(not assigned yet)'}  ${s.fingerprint ?? ''}`);
  lines.push('');
  lines.push('  backends');
  if (s.backends.length === 0) lines.push('    (none configured)');
  for (const b of s.backends) {
    const models = b.models
      .map((m) => {
        const t = m.selftest;
        const notes = [
          ...(m.context_window ? [String(m.context_window)] : []),
          ...(t?.ttft_ms != null ? [`first token ${Math.round(t.ttft_ms)} ms`] : []),
          ...(t?.tokens_per_second != null ? [`${t.tokens_per_second.toFixed(1)} tok/s`] : []),
          // Ejected: its real jobs failed on the engine (the time re-made, so only a date is printed).
          ...(t?.ejected_until
            ? [`EJECTED: its jobs failed, tested again at ${localTime(t.ejected_until)}`]
            : t?.withdrawn
              ? ['WITHDRAWN: failing its self-tests']
              : []),
        ];
        return notes.length > 0 ? `${m.id} (${notes.join(', ')})` : m.id;
      })
      .join(', ');
    lines.push(
      `    ${b.healthy ? 'up  ' : 'DOWN'}  ${b.label}  ${b.healthy ? models || '(no models)' : (b.detail ?? '')}`,
    );
  }
  lines.push('');
  lines.push(`  advertised    ${s.models.length} model(s)`);
  lines.push(
    `  jobs          ${s.jobs.in_flight} in flight, ${s.jobs.served} served, ${s.jobs.missed ?? 0} missed, ${s.jobs.failed} failed, ${s.jobs.cancelled} cancelled`,
  );
  lines.push(`  tokens        ${s.tokens.input} in, ${s.tokens.output} out`);
  lines.push(
    `  speed         ${s.heartbeat.tokens_per_sec_p50} tok/s p50, first byte ${s.heartbeat.p50_latency_ms} ms p50 / ${s.heartbeat.p95_latency_ms} ms p95`,
  );
  lines.push(
    `  errors        ${(s.heartbeat.error_rate_60s * 100).toFixed(1)}% over 60 s${s.heartbeat.last_error_code ? `, last ${s.heartbeat.last_error_code} at ${s.heartbeat.last_error_at}` : ''}`,
  );
  lines.push(`  earnings      ~${s.earnings.usdc.toFixed(6)} USDC (estimate: tokens x advertised prices)`);
  // The dashboard's section is for the fleet table of another agent's page, not for this one.
  const { ledger, dashboard: _fleet, ...others } = s.sections ?? {};
  const l = ledger as LedgerSection | undefined;
  if (l?.today && l.last_7_days) {
    lines.push(`  today         ${usdc(l.today)}`);
    lines.push(`  last 7 days   ${usdc(l.last_7_days)}   (ledger; \`usepod-agent earnings\` for more)`);
  }
  // The earnings history is the owner's record: that it is not being kept must show where they look.
  if (typeof l?.failing === 'string') {
    const waiting = typeof l.pending === 'number' ? `; ${l.pending} record(s) wait to be written` : '';
    lines.push(
      `  LEDGER        cannot be written: ${engineText(l.failing, 200)}${waiting} (jobs are served; see the log)`,
    );
  }
  for (const [name, value] of Object.entries(others)) lines.push(...sectionLines(name, value));
  return lines.join('\n');
}
