import { lookup } from 'node:dns/promises';
import { existsSync, statSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Config as OclifConfig } from '@oclif/core/interfaces';
import {
  type Config,
  createAgent,
  engineText,
  errorMessage,
  isUsepodError,
  readBoundedText,
  type SelfTestResult,
  silentLogger,
} from '@usepod-agent/core';
import { expandHome, readIdentity } from '@usepod-agent/core/cli';
import { runningSelfTests } from '@usepod-agent/plugin-control';
import WebSocket from 'ws';
import { modelIdHint, nameTheModel, type ProbeResult, probeConfigured } from './engines.js';
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
/** An agent's `/status` is a few kilobytes; whatever else answers on its port gets no more. */
const MAX_STATUS_BYTES = 1024 * 1024;

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

/** A check made elsewhere (a plugin's), folded as this module's own are. */
export const folded = (c: Check): Check => check(c.name, c.level, c.detail, c.fix);

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
    const skew = httpDate ? (Date.now() - Date.parse(httpDate)) / 1000 : Number.NaN;
    if (httpDate && !Number.isFinite(skew)) {
      // The header is the coordinator's text: a lie about time is said as such, never as "OK NaN s".
      checks.push(
        check('clock', 'warn', "the coordinator's Date header is not a date; the clock is not checked"),
      );
    } else if (httpDate) {
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
  // Core's sections only: a plugin's section (a GPU rule, webhooks) has nothing to do with authenticating.
  const agent = createAgent({
    config: {
      coordinator: config.coordinator,
      identity: config.identity,
      observability: { ...config.observability, prometheus_addr: 'off' },
    },
    allowInsecure,
    plugins: [],
    defaultPlugins: false,
    logger: silentLogger,
  });
  try {
    const result = await withTimeout(
      new Promise<Check>((resolve) => {
        agent.on('connected', (e) =>
          resolve(check('authenticated', 'ok', `as ${e.providerId ?? '(no provider id yet)'}`)),
        );
        // The coordinator's words arrive folded (the agent bounds them): no forged line reaches the terminal.
        agent.on('auth_refused', (e) =>
          resolve(
            check(
              'authenticated',
              'fail',
              `the coordinator refused this agent: ${e.why}`,
              'check the enrollment code, or that this key is still registered to your account (`usepod-agent identity`)',
            ),
          ),
        );
        agent.on('reconnect', (e) =>
          resolve(
            check(
              'authenticated',
              'fail',
              `the session ended before authentication: ${e.why}`,
              'retry; if it lasts, report it with `DEBUG=usepod:*` output',
            ),
          ),
        );
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
    // Whatever answers on that port is not trusted: bounded in size and time, its words folded.
    const deadline = AbortSignal.timeout(TIMEOUT_MS);
    const res = await fetch(`http://${addr}/status`, { signal: deadline });
    const s = JSON.parse(await readBoundedText(res, MAX_STATUS_BYTES, deadline)) as {
      connected?: boolean;
      state?: unknown;
      provider_id?: unknown;
    };
    return s.connected === true
      ? check(
          'authenticated',
          'ok',
          `the running agent is online as ${typeof s.provider_id === 'string' ? engineText(s.provider_id, 80) : '(no provider id yet)'}`,
        )
      : check(
          'authenticated',
          'fail',
          `the running agent is not connected (${engineText(String(s.state), 80)})`,
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
  return selftestChecksOf(await runningSelfTests(expandHome(config.identity.key_path)));
}

/** The checks of a running agent's self-test results; an ejected model names its jobs' error. */
export function selftestChecksOf(results: SelfTestResult[]): Check[] {
  if (results.length === 0) return [];
  const ejected = (r: SelfTestResult) => typeof r.ejectedUntil === 'string';
  const bad = results.filter((r) => !r.ok || ejected(r));
  if (bad.length === 0) {
    return [check('self-tests', 'ok', `${results.length} model(s) pass their self-tests`)];
  }
  return bad.map((r) =>
    ejected(r)
      ? check(
          `ejected ${engineText(r.backend, 120)}`,
          'warn',
          `${engineText(r.model, 120)} is ejected: its jobs failed on the engine (${engineText(r.jobError ?? 'failed', 200)}); tested again at ${engineText(r.ejectedUntil!, 40)}`,
          "read the engine's log; meanwhile its jobs go to the model's other engines",
        )
      : check(
          `self-test ${r.backend}`,
          'warn',
          `${engineText(r.model, 120)} ${r.withdrawn ? 'is withdrawn' : 'failed'} after ${r.failures} failure(s) in a row: ${r.error ?? 'no answer'}`,
          "read the engine's log; `usepod-agent selftest` tries again now",
        ),
  );
}

/**
 * Each backend: up or down, its models, which are advertised and which dropped and why. Opened as `run`
 * opens them (the caller has loaded the same agent: a mistake in an entry was told once, by `validate`'s words).
 */
export async function backendChecks(
  cli: OclifConfig,
  config: Config,
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
  // Probed without the allow-list: what the engine serves, so doctor can say what the list drops.
  const probes = await probeConfigured(cli, config, { allowList: false });
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
