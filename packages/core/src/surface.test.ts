import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent, createAgent, silentLogger } from './index.js';

/**
 * The three surfaces of `@usepod-agent/core`, pinned: growing one is a visible decision. "." for
 * integrators and plugins, "./backend" for backend authors, "./cli" for this repository's CLI only.
 * Nothing else is exported (test/contract.test.ts checks who imports what).
 */
describe('public surfaces', () => {
  it('the exports map has exactly these paths', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, unknown>;
    };
    expect(Object.keys(pkg.exports)).toEqual(['.', './backend', './cli', './package.json']);
  });

  it('"." exports exactly these names', async () => {
    expect(Object.keys(await import('@usepod-agent/core')).sort()).toEqual([
      'AGENT_VERSION',
      'Agent',
      'CapabilityStage',
      'ERROR_CODES',
      'MAX_PACKAGE_JSON',
      'STATUS_PROOF_CONTEXT',
      'STATUS_PROOF_PATH',
      'UsepodError',
      'checkTimezone',
      'childEnv',
      'configureLogging',
      'createAgent',
      'createLogger',
      'definePlugin',
      'engineText',
      'errorMessage',
      'isUsepodError',
      'jobChannels',
      'killGroup',
      'loadConfig',
      'longTimeout',
      'parseWindow',
      'readBoundedText',
      'readLocalText',
      'readLocalTextSync',
      'readTokenFile',
      'replaceFile',
      'silentLogger',
      'statusProof',
      'timeoutSignal',
      'windowAt',
    ]);
  });

  it('"./backend" exports exactly these names', async () => {
    expect(Object.keys(await import('@usepod-agent/core/backend')).sort()).toEqual([
      'OpenAICompatibleBackend',
      'StreamScanner',
      'UsepodError',
      'backendKindOf',
      'checkPlugin',
      'checkStatus',
      'contextWindowOf',
      'createPool',
      'engineErrorMessage',
      'errorIn200',
      'errorText',
      'getJson',
      'httpError',
      'isConnectError',
      'optionsFromEntry',
      'promGauge',
      'readText',
      'sendRequest',
      'versionAtLeast',
    ]);
  });

  it('"./cli" exports exactly these names', async () => {
    expect(Object.keys(await import('@usepod-agent/core/cli')).sort()).toEqual([
      'DEFAULT_IDENTITY_PATH',
      'DEFAULT_PROMETHEUS_ADDR',
      'MAX_CONFIG_BYTES',
      'backendIdentity',
      'backendLabels',
      'checkIssueAnswer',
      'checkPollAnswer',
      'debugRequested',
      'expandHome',
      'findConfigFile',
      'importPlugin',
      'loadOrCreateIdentity',
      'platformConfigDir',
      'probeBackends',
      'readConfigFile',
      'readIdentity',
      'readLogLevel',
      'readStatusToken',
      'redactor',
      'replaceFileSync',
      'selftestBackends',
      'statusSelfTest',
      'statusTokenPath',
      'validateConfig',
      'writeFileAtomic',
    ]);
  });
});

describe('an Agent exposes no mutable internals', () => {
  it('its members are these; none hands out the metrics, the stats, the hooks or the plugin host', () => {
    expect(Object.getOwnPropertyNames(Agent.prototype).sort()).toEqual([
      'backends',
      'capabilities',
      'constructor',
      'doctor',
      'holds',
      'identity',
      'jobs',
      'kinds',
      'load',
      'metricsText',
      'pause',
      'plugins',
      'providerId',
      'readiness',
      'refresh',
      'resume',
      'sections',
      'selftest',
      'selftestResults',
      'snapshot',
      'start',
      'state',
      'status',
      'statusAddress',
      'stop',
      'waitFor',
    ]);
    const agent = createAgent({ config: {}, logger: silentLogger, defaultPlugins: false });
    const own = Object.keys(agent).filter((k) => !k.startsWith('_'));
    expect(own.sort()).toEqual(['agentVersion', 'config', 'log']);
  });

  it('its config is frozen to the last array, and what it lists is a copy', async () => {
    const agent = createAgent({
      config: { backends: [{ kind: 'x', url: 'http://127.0.0.1:9', models: ['m'] }] },
      logger: silentLogger,
      defaultPlugins: false,
    });
    expect(() => {
      (agent.config.limits as { max_concurrent: number }).max_concurrent = 99;
    }).toThrow(TypeError);
    expect(() => (agent.config.backends[0]!.models as string[]).push('n')).toThrow(TypeError);
    expect(() => (agent.config.backends as unknown[]).pop()).toThrow(TypeError);
    expect(agent.config.limits.max_concurrent).not.toBe(99);
    (agent.plugins as unknown[]).push({});
    expect(agent.plugins).toHaveLength(0);
    (agent.kinds as Map<string, unknown>).set('x', {});
    expect(agent.kinds.size).toBe(0);
  });

  it('its identity is the public half: no sign(), no save()', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usepod-surface-'));
    const agent = createAgent({
      config: {
        coordinator: { url: 'ws://127.0.0.1:9/provider/connect' },
        identity: { key_path: join(dir, 'identity.key') },
        observability: { prometheus_addr: 'off' },
      },
      allowInsecure: true,
      logger: silentLogger,
      defaultPlugins: false,
    });
    try {
      await agent.start();
      const id = agent.identity!;
      expect(Object.keys(id).sort()).toEqual(['created', 'fingerprint', 'path', 'providerId', 'publicKey']);
      expect(Object.isFrozen(id)).toBe(true);
    } finally {
      await agent.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
