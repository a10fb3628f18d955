import { lookup } from 'node:dns/promises';
import { existsSync, statSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  type AgentPlugin,
  type Config,
  createAgent,
  engineText,
  errorMessage,
  expandHome,
  isUsepodError,
  readIdentity,
  silentLogger,
} from '@usepod-agent/core/internal';
import WebSocket from 'ws';
import { runningSelfTests } from './control.js';
import { modelIdHint, nameTheModel, type ProbeResult, probeEngines } from './engines.js';
import { Ledger, ledgerPath } from './ledger/ledger.js';
import { localTime } from './when.js';

/**
 * `usepod-agent doctor` (issue 18): everything that stands between this machine and earning, each check
 * with one line of fix. Network steps go one at a time (DNS, TCP, TLS, WebSocket upgrade, authenticated)
 * so the first one that fails names the cause.
 */
export type Level = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  level: Level;
  detail: string;
  fix?: string;
}

const TIMEOUT_MS = 5_000;

/** Longest detail a check prints: lists of model ids make the longest ones. */
const MAX_DETAIL = 2_000;

/**
 * Every check is folded here, once: its text carries what the coordinator (a refusal reason, a provider id, a
 * certificate's name), an engine (model ids, errors) or a local status port said, and a newline or an escape
 * sequence in it must not print a forged OK line or retitle the terminal (issue 28).
 */
const check = (name: string, level: Level, detail: string, fix?: string): Check => ({
  name: engineText(name, 300),
  level,
  detail: engineText(detail, MAX_DETAIL),
  ...(fix ? { fix: engineText(fix, 300) } : {}),
});

export function identityChecks(config: Config): Promise<Check[]> {
  const path = expandHome(config.identity.key_path);
  return (async () => {
    if (!existsSync(path)) {
      return [
        check(
          'identity',
          config.coordinator.enrollment_code ? 'ok' : 'fail',
          `no identity file yet at ${path}; the agent creates one on its first run`,
          config.coordinator.enrollment_code
            ? undefined
            : 'run `usepod-agent setup` to pair this machine (or set coordinator.enrollment_code)',
        ),
      ];
    }
    const out: Check[] = [];
    try {
      const id = await readIdentity(path);
      out.push(check('identity', 'ok', `${path} (${id.fingerprint})`));
      if (id.providerId) out.push(check('provider id', 'ok', id.providerId));
      else if (config.coordinator.enrollment_code)
        out.push(
          check(
            'provider id',
            'warn',
            'none yet: enrollment pending (a code is configured)',
            'start the agent: it enrolls on its first connection',
          ),
        );
      else
        out.push(
          check(
            'provider id',
            'fail',
            'none assigned and no enrollment code configured',
            'run `usepod-agent setup`, or set coordinator.enrollment_code',
          ),
        );
    } catch (err) {
      out.push(check('identity', 'fail', errorMessage(err), 'restore the identity file from a backup'));
      return out;
    }
    if (process.platform !== 'win32') {
      const mode = statSync(path).mode & 0o777;
      if (mode & 0o077)
        out.push(
          check(
            'identity mode',
            'fail',
            `mode ${mode.toString(8).padStart(4, '0')}: others can read the key`,
            `chmod 600 ${path}`,
          ),
        );
      else out.push(check('identity mode', 'ok', '0600'));
    }
    return out;
  })();
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** DNS, TCP, TLS, WebSocket upgrade (with the clock against the coordinator's Date header), one by one. */
export async function coordinatorChecks(config: Config): Promise<{ checks: Check[]; reachable: boolean }> {
  const url = new URL(config.coordinator.url);
  const secure = url.protocol === 'wss:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || (secure ? 443 : 80));
  const checks: Check[] = [];
  const fail = (name: string, detail: string, fix: string) => {
    checks.push(check(name, 'fail', detail, fix));
    return { checks, reachable: false };
  };
  try {
    const { address } = await withTimeout(lookup(host), 'DNS');
    checks.push(check('coordinator DNS', 'ok', `${host} is ${address}`));
  } catch (err) {
    return fail(
      'coordinator DNS',
      `cannot resolve ${host}: ${errorMessage(err)}`,
      "check coordinator.url and this machine's DNS",
    );
  }
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const s = tcpConnect({ host, port }, () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      'TCP',
    );
    checks.push(check('coordinator TCP', 'ok', `${host}:${port} accepts connections`));
  } catch (err) {
    return fail(
      'coordinator TCP',
      `nothing answers at ${host}:${port}: ${errorMessage(err)}`,
      'check coordinator.url, a firewall or an outbound proxy',
    );
  }
  if (secure) {
    try {
      const detail = await withTimeout(
        new Promise<string>((resolve, reject) => {
          const s = tlsConnect({ host, port, servername: host }, () => {
            const cert = s.getPeerCertificate();
            const text = `${s.getProtocol()}, certificate for ${cert.subject?.CN ?? host} valid until ${localTime(cert.valid_to)}`;
            s.destroy();
            resolve(text);
          });
          s.on('error', reject);
        }),
        'TLS',
      );
      checks.push(check('coordinator TLS', 'ok', detail));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return fail(
        'coordinator TLS',
        `TLS to ${host}:${port} failed: ${code ?? errorMessage(err)}`,
        'a proxy that re-signs TLS needs its CA in NODE_EXTRA_CA_CERTS; else check the clock and coordinator.url',
      );
    }
  }
  try {
    const date = await withTimeout(
      new Promise<string | undefined>((resolve, reject) => {
        const ws = new WebSocket(url, { handshakeTimeout: TIMEOUT_MS });
        ws.on('upgrade', (res) => resolve(res.headers.date));
        ws.on('open', () => ws.close(1000));
        ws.on('unexpected-response', (_req, res) => {
          reject(new Error(`HTTP ${res.statusCode} instead of a WebSocket upgrade`));
          ws.terminate();
        });
        ws.on('error', reject);
      }),
      'WebSocket',
    );
    checks.push(check('coordinator WebSocket', 'ok', `${url.origin}${url.pathname} upgrades`));
    // The upgrade answer may carry no Date (ws writes none); any HTTP answer from the same server does.
    const httpDate =
      date ??
      (await fetch(`${secure ? 'https' : 'http'}://${url.host}/`, {
        method: 'HEAD',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      })
        .then((r) => r.headers.get('date') ?? undefined)
        .catch(() => undefined));
    if (httpDate) {
      const skew = (Date.now() - Date.parse(httpDate)) / 1000;
      const level: Level = Math.abs(skew) > 30 ? 'fail' : Math.abs(skew) > 5 ? 'warn' : 'ok';
      checks.push(
        check(
          'clock',
          level,
          `${skew >= 0 ? '+' : ''}${skew.toFixed(1)} s against the coordinator`,
          level === 'ok' ? undefined : 'enable time sync (systemd-timesyncd, chrony)',
        ),
      );
    }
  } catch (err) {
    return fail(
      'coordinator WebSocket',
      `${url.href}: ${errorMessage(err)}`,
      'check the path of coordinator.url (…/provider/connect) and any proxy in between',
    );
  }
  return { checks, reachable: true };
}

/** Authenticates as this agent would, with no backends (nothing is advertised), then leaves. */
export async function authCheck(config: Config, allowInsecure: boolean): Promise<Check> {
  const agent = createAgent({
    config: {
      ...config,
      backends: [],
      observability: { ...config.observability, prometheus_addr: 'off' },
      ledger: { ...config.ledger, path: 'off' },
    },
    allowInsecure,
    plugins: [],
    logger: silentLogger,
  });
  try {
    const result = await withTimeout(
      new Promise<Check>((resolve) => {
        agent.on('online', (providerId) =>
          resolve(check('authenticated', 'ok', `as ${providerId ?? '(no provider id yet)'}`)),
        );
        agent.on('sessionEnd', (end) => {
          if (end.kind === 'auth_failed') {
            resolve(
              check(
                'authenticated',
                'fail',
                end.error?.message ??
                  `the coordinator refused this agent: ${end.reason ?? 'no reason given'}`,
                'check the enrollment code, or that this key is still registered to your account (`usepod-agent identity`)',
              ),
            );
          } else if (!end.reachedAuth) {
            resolve(
              check(
                'authenticated',
                'fail',
                `the session ended before authentication: ${end.detail ?? end.kind}`,
                'retry; if it lasts, report it with `DEBUG=usepod:*` output',
              ),
            );
          }
        });
        agent.start().catch(async (err: unknown) => {
          // An agent runs with this key: its own connection is what counts (never a second session).
          if (isUsepodError(err, 'USEPOD_IDENTITY_IN_USE')) resolve(await liveAuth(config));
          else resolve(check('authenticated', 'fail', errorMessage(err), 'fix the line above'));
        });
      }),
      'authentication',
    );
    return result;
  } catch (err) {
    return check(
      'authenticated',
      'fail',
      errorMessage(err),
      'the coordinator accepted the connection but never answered the handshake',
    );
  } finally {
    await agent.stop().catch(() => {});
  }
}

async function liveAuth(config: Config): Promise<Check> {
  const addr = config.observability.prometheus_addr;
  try {
    const res = await fetch(`http://${addr}/status`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const s = (await res.json()) as { connected?: boolean; state?: string; provider_id?: string | null };
    return s.connected
      ? check(
          'authenticated',
          'ok',
          `the running agent is online as ${s.provider_id ?? '(no provider id yet)'}`,
        )
      : check(
          'authenticated',
          'fail',
          `the running agent is not connected (${s.state})`,
          'read its log: `usepod-agent service logs` or its terminal',
        );
  } catch {
    return check(
      'authenticated',
      'warn',
      `an agent runs with this identity but its status (${addr}) does not answer`,
      'check observability.prometheus_addr',
    );
  }
}

/**
 * What the running agent's self-tests found (`[selftest]`), over its control socket: a model withdrawn
 * or failing is a warning naming the engine's error; nothing when no agent runs or none was tested.
 */
export async function selftestChecks(config: Config): Promise<Check[]> {
  const results = await runningSelfTests(expandHome(config.identity.key_path));
  if (results.length === 0) return [];
  const bad = results.filter((r) => !r.ok);
  if (bad.length === 0) {
    return [check('self-tests', 'ok', `${results.length} model(s) pass their self-tests`)];
  }
  return bad.map((r) =>
    check(
      `self-test ${r.backend}`,
      'warn',
      `${engineText(r.model, 120)} ${r.withdrawn ? 'is withdrawn' : 'failed'} after ${r.failures} failure(s) in a row: ${r.error ?? 'no answer'}`,
      "read the engine's log; `usepod-agent selftest` tries again now",
    ),
  );
}

/** Each backend: up or down, its models, which are advertised and which dropped and why. */
export async function backendChecks(
  config: Config,
  plugins: AgentPlugin[],
): Promise<{ checks: Check[]; probes: ProbeResult[] }> {
  if (config.backends.length === 0) {
    return {
      checks: [
        check(
          'backends',
          'fail',
          'none configured',
          'run `usepod-agent backends` to find engines, then add one to the config',
        ),
      ],
      probes: [],
    };
  }
  const probes = await probeEngines(
    // Probed without the allow-list: what the engine serves, so doctor can say what the list drops.
    config.backends.map(({ models: _allow, ...entry }) => ({
      kind: entry.kind,
      url: entry.url,
      entry: entry as (typeof config.backends)[number],
      apiKey: entry.api_key_env ? process.env[entry.api_key_env] : undefined,
      source: 'config' as const,
    })),
    plugins,
  );
  const checks: Check[] = [];
  let advertised = 0;
  for (const [i, p] of probes.entries()) {
    const name = `backend ${p.kind}${p.url ? ` ${p.url}` : ''}`;
    if (!p.status.healthy) {
      checks.push(
        check(
          name,
          'fail',
          `down: ${p.status.detail ?? 'no answer'}`,
          'start the engine, or fix its url in the config',
        ),
      );
      continue;
    }
    const allow = config.backends[i]?.models;
    const served = p.status.models.map((m) => m.id);
    const kept = allow && allow.length > 0 ? served.filter((id) => allow.includes(id)) : served;
    const dropped = served.filter((id) => !kept.includes(id));
    const zeroPriced = kept.filter((id) => {
      const price = config.pricing.models[id];
      return price !== undefined && (price.input_per_1m <= 0 || price.output_per_1m <= 0);
    });
    const offered = kept.filter((id) => !zeroPriced.includes(id));
    advertised += offered.length;
    const parts = [`up, ${served.length} model(s)`];
    if (offered.length) parts.push(`advertised: ${offered.join(', ')}`);
    if (dropped.length) parts.push(`dropped by the models allow-list: ${dropped.join(', ')}`);
    if (zeroPriced.length) parts.push(`dropped for a zero price: ${zeroPriced.join(', ')}`);
    if (allow?.length && served.length > 0) {
      const missing = allow.filter((id) => !served.includes(id));
      if (missing.length) parts.push(`allow-listed but not served: ${missing.join(', ')}`);
    }
    for (const id of offered) {
      if (modelIdHint(id, p.naming))
        checks.push(
          check('model name', 'warn', `${id} is a file path, not a model name`, nameTheModel(p.naming)),
        );
    }
    checks.push(
      offered.length > 0
        ? check(name, dropped.length || zeroPriced.length ? 'warn' : 'ok', parts.join('; '))
        : check(
            name,
            'fail',
            parts.join('; '),
            served.length === 0
              ? 'load a model in the engine'
              : 'allow-list a model the engine serves (backends[].models), or give it a price',
          ),
    );
  }
  if (advertised > 0) {
    const d = config.pricing;
    const custom = Object.entries(d.models)
      .map(([id, p]) => `${id} ${p.input_per_1m}/${p.output_per_1m}`)
      .join(', ');
    checks.push(
      check(
        'prices',
        'ok',
        `defaults ${d.default_input_per_1m}/${d.default_output_per_1m} micro-USDC per 1M tokens in/out${custom ? `; ${custom}` : ''}`,
      ),
    );
  }
  return { checks, probes };
}

/** What the ledger says about the last 24 h: jobs missed and why, with what would have caught them. */
export function ledgerChecks(config: Config, probes: ProbeResult[], now = Date.now()): Check[] {
  const path = ledgerPath(config);
  if (!path) return [check('ledger', 'warn', 'off ([ledger] path = "off"): nothing to say about past jobs')];
  if (!existsSync(path)) return [check('ledger', 'ok', `none yet at ${path} (written as jobs arrive)`)];
  let ledger: Ledger;
  try {
    ledger = Ledger.open(path, { readonly: true });
  } catch (err) {
    return [
      check(
        'ledger',
        'warn',
        errorMessage(err),
        'run doctor as the user the agent runs as (sudo for a service)',
      ),
    ];
  }
  try {
    const since = now - 86_400_000;
    const checks: Check[] = [];
    const last = ledger.db.prepare(`SELECT max(received_at) AS t FROM jobs WHERE outcome = 'done'`).get() as {
      t: number | null;
    };
    checks.push(
      last.t === null
        ? check(
            'last job',
            'warn',
            'no job served yet',
            'if the agent has been online a while, look at the checks above',
          )
        : check('last job', now - last.t > 86_400_000 ? 'warn' : 'ok', `served ${ago(now - last.t)} ago`),
    );
    const missed = ledger.db
      .prepare(
        `SELECT refusal, model, count(*) AS n FROM jobs
         WHERE received_at >= ? AND refusal IS NOT NULL AND refusal != 'malformed' GROUP BY 1, 2 ORDER BY 3 DESC`,
      )
      .all(since) as { refusal: string; model: string; n: number }[];
    const count = (r: string) => missed.filter((m) => m.refusal === r).reduce((n, m) => n + m.n, 0);
    const atCapacity = count('max_concurrent');
    if (atCapacity > 0) {
      const capacity = probes.reduce((n, p) => n + (p.status.load?.capacity ?? 0), 0);
      const limit = config.limits.max_concurrent;
      const room =
        capacity > limit
          ? `: the engines can run ${capacity} at once; raise limits.max_concurrent`
          : capacity > 0
            ? `: the engines run ${capacity} at once too; more engine capacity would take them`
            : '; raise limits.max_concurrent if the engine has room';
      checks.push(
        check(
          'missed: capacity',
          'warn',
          `${atCapacity} job(s) refused in 24 h at max_concurrent ${limit}${room}`,
          capacity > limit ? `set limits.max_concurrent = ${capacity}` : undefined,
        ),
      );
    }
    const overBudget = count('token_budget');
    if (overBudget > 0) {
      checks.push(
        check(
          'missed: token budget',
          'warn',
          `${overBudget} job(s) refused in 24 h over max_tokens_per_minute ${config.limits.max_tokens_per_minute ?? ''}`,
          'raise limits.max_tokens_per_minute if the engine keeps up',
        ),
      );
    }
    const tooLarge = count('request_too_large');
    if (tooLarge > 0) {
      checks.push(
        check(
          'missed: too large',
          'warn',
          `${tooLarge} job(s) in 24 h were over limits.max_request_bytes ${config.limits.max_request_bytes}`,
          'raise limits.max_request_bytes',
        ),
      );
    }
    for (const m of missed.filter((x) => x.refusal === 'model_not_loaded').slice(0, 5)) {
      checks.push(
        check(
          'missed: model',
          'warn',
          `${m.n} job(s) in 24 h asked for ${engineText(m.model, 512)}, which no engine here serves`,
          'load it in an engine if you want those jobs',
        ),
      );
    }
    if (missed.length === 0) checks.push(check('missed jobs', 'ok', 'none in 24 h'));
    const budget = config.limits.max_tokens_per_minute;
    if (budget) {
      const peak = ledger.db
        .prepare(
          `SELECT max(t) AS peak FROM (SELECT sum(input_tokens + output_tokens) AS t FROM jobs WHERE received_at >= ?
           GROUP BY received_at / 60000)`,
        )
        .get(since) as { peak: number | null };
      const share = (peak.peak ?? 0) / budget;
      checks.push(
        check(
          'token budget',
          share >= 0.9 ? 'warn' : 'ok',
          `busiest minute in 24 h used ${Math.round(share * 100)}% of max_tokens_per_minute ${budget}`,
          share >= 0.9 ? 'raise limits.max_tokens_per_minute if the engine keeps up' : undefined,
        ),
      );
    }
    return checks;
  } finally {
    ledger.close();
  }
}

function ago(ms: number): string {
  const m = Math.round(ms / 60_000);
  if (m < 60) return `${m} min`;
  const h = Math.round(m / 60);
  return h < 48 ? `${h} h` : `${Math.round(h / 24)} days`;
}
