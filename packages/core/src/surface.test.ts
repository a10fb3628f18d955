import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

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
      'UsepodError',
      'configureLogging',
      'createAgent',
      'createLogger',
      'definePlugin',
      'engineText',
      'errorMessage',
      'isUsepodError',
      'jobChannels',
      'loadConfig',
      'longTimeout',
      'silentLogger',
    ]);
  });

  it('"./backend" exports exactly these names', async () => {
    expect(Object.keys(await import('@usepod-agent/core/backend')).sort()).toEqual([
      'OpenAICompatibleBackend',
      'StreamScanner',
      'UsepodError',
      'backendKindOf',
      'checkPlugin',
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
      'debugRequested',
      'expandHome',
      'findConfigFile',
      'loadOrCreateIdentity',
      'platformConfigDir',
      'probeBackends',
      'readConfigFile',
      'readIdentity',
      'readLogLevel',
      'redactor',
      'selftestBackends',
      'statusSelfTest',
      'validateConfig',
      'writeFileAtomic',
    ]);
  });
});
