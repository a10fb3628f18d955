import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@usepod-agent/core';
import { readIdentity } from '@usepod-agent/core/cli';
import { LlamacppEmulator, PairingServer, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TgiEmulator } from '../../../examples/custom-backend-plugin/src/tgi-emulator.js';
import { launchdPlist, planService, quoteSystemd, type ServiceOptions, systemdUnit } from './service/plan.js';

const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../../examples/custom-backend-plugin', import.meta.url));
let dir: string;
let env: NodeJS.ProcessEnv;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}
function cli(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<Out> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...env, ...extra }, cwd: dir },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-op-'));
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_DATA_HOME: join(dir, 'data'),
    XDG_CACHE_HOME: join(dir, 'cache'),
    OCLIF_DISABLE_LINKED_ESM_WARNING: '1',
  };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('setup (PROTOCOL.md section 9)', () => {
  it('pairs, writes a complete config and saves the provider id', async () => {
    const engine = await new VllmEmulator().start();
    const pairing = await PairingServer.start({
      approveAfterPolls: 3,
      providerId: 'prov_42',
      modelConfig: [
        { model_id: 'Qwen/Qwen3-14B', input_per_1m: 200_000, output_per_1m: 600_000, max_concurrent: 4 },
      ],
    });
    try {
      const cfg = join(dir, 'paired', 'agent.toml');
      const key = join(dir, 'paired', 'identity.key');
      const out = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        cfg,
        '--identity',
        key,
        '--no-detect',
        '--engine',
        `vllm=${engine.url}`,
        '--poll-interval',
        '20',
      ]);
      expect(out.stderr).not.toMatch(/Error|\n\s+at /);
      expect(out.code).toBe(0);
      const issued = pairing.issued.items[0]!;
      expect(out.stdout).toContain(issued.code);
      expect(out.stdout).toContain(`${pairing.url}/host/pair`);
      expect(out.stdout).toMatch(/┌─+┐/);
      expect(out.stdout).toContain(`usepod-agent run --config ${cfg} --allow-insecure`);
      expect(out.stdout + out.stderr).not.toContain(pairing.hostToken);
      // The polls carried the detected engines and the agent version, every 800 ms by default (20 here).
      expect(pairing.polls.items.length).toBeGreaterThanOrEqual(3);
      expect(pairing.polls.items[0]!.capabilities).toEqual({
        backends: [{ kind: 'vllm', url: engine.url, models: ['Qwen/Qwen3-14B'] }],
        agent_version: expect.any(String),
      });
      const { config } = await loadConfig({ path: cfg, allowInsecure: true });
      expect(config.coordinator.url).toBe(`ws://${new URL(pairing.url).host}/provider/connect`);
      expect(config.identity.key_path).toBe(key);
      expect(config.backends).toEqual([{ kind: 'vllm', url: engine.url }]);
      expect(config.pricing.models['Qwen/Qwen3-14B']).toEqual({
        input_per_1m: 200_000,
        output_per_1m: 600_000,
        max_concurrent: 4,
      });
      expect(config.limits.max_concurrent).toBe(4);
      expect(await readFile(cfg, 'utf8')).not.toContain(pairing.hostToken);
      const id = await readIdentity(key);
      expect(id.providerId).toBe('prov_42');
      expect(issued.pubkey).toBe(id.publicKey);

      // An existing config is not replaced without --force; with it, a backup is kept.
      const again = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        cfg,
        '--identity',
        key,
        '--no-detect',
      ]);
      expect(again.code).toBe(2);
      expect(again.stderr.trim().split('\n')[0]).toBe(
        `usepod-agent: a config already exists at ${cfg}; pass --force to replace it (a backup is kept) (USEPOD_USAGE)`,
      );
      const forced = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        cfg,
        '--identity',
        key,
        '--no-detect',
        '--force',
        '--poll-interval',
        '20',
      ]);
      expect(forced.code).toBe(0);
      const files = await readdir(join(dir, 'paired'));
      expect(files.some((f) => f.startsWith('agent.toml.bak-'))).toBe(true);
    } finally {
      await pairing.close();
      await engine.close();
    }
  });

  it('a config it cannot write (a full disk) after pairing: one line naming it, the provider id kept, no stray file', async (ctx) => {
    // A real full disk: a 64 KiB tmpfs (mounting needs root; elsewhere the test is skipped).
    const disk = await mkdtemp(join(tmpdir(), 'usepod-setup-full-'));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]).status !== 0) {
      await rm(disk, { recursive: true, force: true });
      ctx.skip('no tmpfs could be mounted here (needs root)');
    }
    const pairing = await PairingServer.start({ approveAfterPolls: 1, providerId: 'prov_44' });
    try {
      await writeFile(join(disk, 'fill'), Buffer.alloc(64 * 1024)).catch(() => {});
      await writeFile(join(disk, 'fill2'), Buffer.alloc(4096)).catch(() => {});
      const cfg = join(disk, 'agent.toml');
      const key = join(dir, 'full-disk', 'identity.key');
      const out = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        cfg,
        '--identity',
        key,
        '--no-detect',
        '--poll-interval',
        '20',
      ]);
      expect(out.code).toBe(2);
      expect(out.stderr.trimEnd().split('\n').at(-2)).toBe(
        `usepod-agent: paired as provider prov_44 (saved in ${key}), but the config ${cfg} could not be written (ENOSPC): free space on its disk, then run \`usepod-agent setup\` again (USEPOD_CONFIG_WRITE)`,
      );
      expect(out.stderr).not.toMatch(/\n\s+at /);
      expect((await readIdentity(key)).providerId).toBe('prov_44');
      expect((await readdir(disk)).sort()).toEqual(['fill', 'fill2']);
    } finally {
      await pairing.close();
      spawnSync('umount', [disk]);
      await rm(disk, { recursive: true, force: true });
    }
  });

  it('--force over a FIFO or a folder names it in one line before pairing, never waiting on it', async () => {
    const pairing = await PairingServer.start({ approveAfterPolls: 1, providerId: 'prov_43' });
    try {
      const fifo = join(dir, 'fifo.toml');
      // Nobody writes into it: the backup's copy, after the code was entered, waited for good.
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      for (const [target, why] of [
        [fifo, 'is not a regular file \\(a device, FIFO or socket\\)'],
        [dir, 'is a folder, not a file'],
      ] as const) {
        const out = await cli([
          'setup',
          '--coordinator',
          pairing.url,
          '--config',
          target,
          '--identity',
          join(dir, 'fifo-k'),
          '--no-detect',
          '--force',
          '--poll-interval',
          '20',
        ]);
        expect(out.code, out.stderr).toBe(2);
        expect(out.stderr.trim().split('\n')[0]).toMatch(
          new RegExp(
            `^usepod-agent: config file .* ${why}: setup replaces only a config file; remove it, or pass --config another path \\(USEPOD_CONFIG_UNREADABLE\\)$`,
          ),
        );
      }
      expect(pairing.issued.items).toHaveLength(0);
    } finally {
      await pairing.close();
    }
  });

  it('says so and exits non-zero when the code expires', async () => {
    const pairing = await PairingServer.start({ expireAll: true });
    try {
      const out = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        join(dir, 'x', 'a.toml'),
        '--identity',
        join(dir, 'x', 'k'),
        '--no-detect',
        '--poll-interval',
        '20',
      ]);
      expect(out.code).toBe(2);
      expect(out.stderr).toContain(
        'usepod-agent: the pairing code expired before it was entered; run `usepod-agent setup` again',
      );
      expect(existsSync(join(dir, 'x', 'a.toml'))).toBe(false);
    } finally {
      await pairing.close();
    }
  });

  it('gives one clear line for HTTP failures', async () => {
    /** `setup` against a coordinator, with a config and key of their own (`name`). */
    const setupAgainst = (url: string, name: string) =>
      cli([
        'setup',
        '--coordinator',
        url,
        '--config',
        join(dir, `${name}.toml`),
        '--identity',
        join(dir, `${name}k`),
        '--no-detect',
      ]);
    const pairing = await PairingServer.start({
      issueFailure: { status: 503, body: '{"error":"maintenance"}' },
    });
    const gone = pairing.url;
    await pairing.close();
    const down = await setupAgainst(gone, 'y');
    expect(down.code).toBe(2);
    expect(down.stderr.trim().split('\n')[0]).toMatch(
      /^usepod-agent: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(check --coordinator and your network\) \(USEPOD_PAIRING_FAILED\)$/,
    );
    const failing = await PairingServer.start({
      issueFailure: { status: 503, body: '{"error":"maintenance"}' },
    });
    try {
      const out = await setupAgainst(failing.url, 'z');
      expect(out.stderr.trim().split('\n')[0]).toBe(
        'usepod-agent: /v1/host/pair/issue answered HTTP 503: {"error":"maintenance"} (USEPOD_PAIRING_FAILED)',
      );
    } finally {
      await failing.close();
    }
    // The coordinator's answer is read to 1 MB at most, and the line still gives its status.
    const huge = await PairingServer.start({
      issueFailure: { status: 502, body: 'x'.repeat(2 * 1024 * 1024) },
    });
    try {
      const out = await setupAgainst(huge.url, 'h');
      expect(out.code).toBe(2);
      expect(out.stderr.trim().split('\n')[0]).toBe(
        'usepod-agent: /v1/host/pair/issue answer (HTTP 502) could not be read: answer over 1048576 bytes (USEPOD_PAIRING_FAILED)',
      );
    } finally {
      await huge.close();
    }
  });

  it('writes one engine behind two names once, and says how to name a model served by its file path (issue 28)', async () => {
    const engine = await new LlamacppEmulator().start();
    const pairing = await PairingServer.start({ approveAfterPolls: 1 });
    try {
      const port = new URL(engine.url).port;
      const cfg = join(dir, 'twice', 'agent.toml');
      const out = await cli([
        'setup',
        '--coordinator',
        pairing.url,
        '--config',
        cfg,
        '--identity',
        join(dir, 'twice', 'identity.key'),
        '--no-detect',
        '--engine',
        `llamacpp=http://localhost:${port}`,
        '--engine',
        `llamacpp=http://127.0.0.1:${port}/`,
        '--engine',
        `llamacpp=http://[::1]:${port}`,
        '--poll-interval',
        '20',
      ]);
      expect(out.stderr).not.toMatch(/Error|\n\s+at /);
      expect(out.code).toBe(0);
      // The coordinator hears of one engine, by the name the operator gave first, and the config holds one.
      expect((pairing.polls.items[0]!.capabilities as { backends: unknown }).backends).toEqual([
        { kind: 'llamacpp', url: `http://localhost:${port}`, models: [engine.models[0]!.id] },
      ]);
      const { config } = await loadConfig({ path: cfg, allowInsecure: true });
      expect(config.backends).toEqual([{ kind: 'llamacpp', url: `http://localhost:${port}` }]);
      expect(out.stdout).toContain(
        'hint: ../models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf is a file path, not a model name: start llama-server with --alias NAME',
      );
    } finally {
      await pairing.close();
      await engine.close();
    }
  });

  it('probes the usual ports, llama.cpp on both 8080 and 9931', async () => {
    const { builtinPlugins, wellKnownEngines } = await import('./engines.js');
    const engines = await wellKnownEngines(await builtinPlugins());
    expect(engines.map((e) => `${e.kind}:${new URL(e.url).port}`)).toEqual([
      'vllm:8000',
      'llamacpp:8080',
      'llamacpp:9931',
      'lmstudio:1234',
      'ollama:11434',
    ]);
  });

  it('derives the coordinator and pairing page from the production base', async () => {
    const { coordinatorUrlFor, pairPageFor } = await import('./pairing.js');
    expect(coordinatorUrlFor('https://api.usepod.ai')).toBe('wss://api.usepod.ai/provider/connect');
    expect(pairPageFor('https://api.usepod.ai')).toBe('https://usepod.ai/host/pair');
    expect(pairPageFor('https://staging.usepod.ai')).toBe('https://staging.usepod.ai/host/pair');
  });
});

describe('service', () => {
  const base: ServiceOptions = {
    platform: 'linux',
    nodePath: '/usr/bin/node',
    cliPath: '/usr/lib/node_modules/usepod-agent/bin/run.js',
    configPath: '/home/op/agent.toml',
    serviceConfigToml: '[identity]\nkey_path = "/var/lib/usepod-agent/identity.key"\n',
    identityPath: '/home/op/.usepod-agent/identity.key',
    logLevel: 'debug',
    drainTimeoutS: 30,
    home: '/Users/op',
    uid: 501,
  };

  it('writes a hardened systemd unit that carries --config and the log level', () => {
    const unit = systemdUnit(base);
    for (const line of [
      'User=usepod',
      'Group=usepod',
      'WorkingDirectory=/var/lib/usepod-agent',
      'Restart=always',
      'NoNewPrivileges=true',
      'ProtectSystem=strict',
      'ProtectHome=true',
      'PrivateTmp=true',
      'ReadWritePaths=/var/lib/usepod-agent',
      'CapabilityBoundingSet=',
      'KillSignal=SIGTERM',
      'TimeoutStopSec=45',
      'ExecStart=/usr/bin/node /usr/lib/node_modules/usepod-agent/bin/run.js run --config /etc/usepod-agent/agent.toml --log-level debug',
      'WantedBy=multi-user.target',
    ]) {
      expect(unit.split('\n')).toContain(line);
    }
    expect(systemdUnit({ ...base, logLevel: 'info' })).toMatch(/--config \/etc\/usepod-agent\/agent\.toml\n/);
    expect(systemdUnit({ ...base, nodeFlags: ['--max-semi-space-size=4'] })).toContain(
      'ExecStart=/usr/bin/node --max-semi-space-size=4 /usr/lib/node_modules/usepod-agent/bin/run.js run --config',
    );
    // systemd would expand `%h` and `$HOME` in ExecStart, and read a `'` as a quote: taken literally.
    const odd = systemdUnit({ ...base, cliPath: "/opt/100%h $HOME's/run.js" });
    expect(odd).toContain(`ExecStart=/usr/bin/node "/opt/100%%h $$HOME's/run.js" run --config`);
    expect(quoteSystemd('/opt/a%b$c')).toBe('/opt/a%%b$$c');
    // `service install --allow-insecure` (a ws:// coordinator): the service's run is told so too.
    expect(systemdUnit({ ...base, logLevel: 'info', allowInsecure: true })).toMatch(
      /--config \/etc\/usepod-agent\/agent\.toml --allow-insecure\n/,
    );
  });

  it('plans the install, status and logs commands', () => {
    const install = planService('install', base);
    const lines = install.map((s) =>
      s.kind === 'run' ? `${s.cmd} ${s.args.join(' ')}` : `${s.kind} ${s.path}`,
    );
    expect(lines).toEqual([
      'sh -c id -u usepod >/dev/null 2>&1 || useradd --system --home-dir /var/lib/usepod-agent --shell /usr/sbin/nologin usepod',
      'install -d -o usepod -g usepod -m 0700 /var/lib/usepod-agent',
      'install -d -m 0755 /etc/usepod-agent',
      'write /etc/usepod-agent/agent.toml',
      'chown usepod:usepod /etc/usepod-agent/agent.toml',
      // Read as root, written as the service user into the folder it owns (test/service-attacks).
      'runuser -u usepod -- sh -c umask 077 && cat >"$1.new" && test -s "$1.new" && mv -f "$1.new" "$1" sh /var/lib/usepod-agent/identity.key',
      'write /etc/systemd/system/usepod-agent.service',
      'systemctl daemon-reload',
      'systemctl enable usepod-agent.service',
      // restart: a 0.3.x agent already running under the same unit is replaced, never left beside ours.
      'systemctl restart usepod-agent.service',
    ]);
    // The config may hold the enrollment code: written 0600, the service user's, as the key (it was 0644,
    // and the service's own loader warned at every start that others could read the code).
    expect(
      install.find((s) => s.kind === 'write' && s.path === '/etc/usepod-agent/agent.toml'),
    ).toMatchObject({
      mode: 0o600,
    });
    const logs = planService('logs', { ...base, follow: true, lines: 50 })[0]!;
    expect(logs).toMatchObject({
      cmd: 'journalctl',
      args: ['-u', 'usepod-agent.service', '-n', '50', '--no-pager', '-f'],
    });
  });

  it('installs the 0.3.x names: the macOS system daemon ai.usepod.agent and the Windows service ai.usepod.agent, replacing what runs', () => {
    const plist = launchdPlist({ ...base, platform: 'darwin', user: 'op' });
    expect(plist).toContain('<string>ai.usepod.agent</string>');
    expect(plist).toContain('<string>--config</string>\n    <string>/home/op/agent.toml</string>');
    expect(plist).toContain('<key>KeepAlive</key>\n  <true/>');
    expect(plist).toContain('<key>UserName</key>\n  <string>op</string>');
    expect(plist).toContain('/Library/Logs/usepod-agent.log');
    const mac = planService('install', {
      ...base,
      platform: 'darwin',
      user: 'op',
      home: '/Users/op',
      uid: 501,
    });
    expect(
      mac.map((s) => (s.kind === 'run' ? `${s.cmd} ${s.args.join(' ')}` : `${s.kind} ${s.path}`)),
    ).toEqual([
      'launchctl bootout system/ai.usepod.agent',
      'launchctl bootout gui/501/ai.usepod.agent',
      'remove /Users/op/Library/LaunchAgents/ai.usepod.agent.plist',
      'write /Library/LaunchDaemons/ai.usepod.agent.plist',
      'launchctl bootstrap system /Library/LaunchDaemons/ai.usepod.agent.plist',
    ]);
    expect(planService('status', { ...base, platform: 'darwin' })[0]).toMatchObject({
      args: ['print', 'system/ai.usepod.agent'],
    });
    const win = planService('install', {
      ...base,
      platform: 'win32',
      nodePath: 'C:\\Program Files\\nodejs\\node.exe',
      cliPath: 'C:\\npm\\usepod-agent\\bin\\run.js',
    });
    // Whatever ran under the 0.3.x name or 0.4.0's is stopped and removed before the service is created.
    const runs = win
      .filter((s) => s.kind === 'run')
      .map((s) => (s.kind === 'run' ? `${s.cmd} ${s.args[0]} ${s.args[1]}` : ''));
    expect(runs.slice(0, 4)).toEqual([
      'sc.exe stop ai.usepod.agent',
      'sc.exe delete ai.usepod.agent',
      'sc.exe stop usepod-agent',
      'sc.exe delete usepod-agent',
    ]);
    const create = win.find((s) => s.kind === 'run' && s.cmd === 'sc.exe' && s.args[0] === 'create');
    expect(create).toMatchObject({
      args: [
        'create',
        'ai.usepod.agent',
        'binPath=',
        expect.stringContaining('"C:\\Program Files\\nodejs\\node.exe"'),
        'start=',
        'auto',
        'DisplayName=',
        'Use Pod provider agent',
      ],
    });
    const reg = win.find((s) => s.kind === 'run' && s.cmd === 'reg.exe');
    expect(reg && reg.kind === 'run' && reg.args.join(' ')).toContain(
      'USEPOD_AGENT_LOG_FILE=C:\\ProgramData\\usepod-agent\\agent.log',
    );
  });

  it('carries the operator plugins into the service, and refuses an ExecStart the sandbox hides', async () => {
    const { hiddenFromUnit, LINUX_PLUGIN_ROOT } = await import('./service/plan.js');
    const withPlugins = planService('install', { ...base, pluginRoot: '/home/op/.local/share/usepod-agent' });
    const lines = withPlugins.map((s) =>
      s.kind === 'run' ? `${s.cmd} ${s.args.join(' ')}` : `${s.kind} ${s.path}`,
    );
    // Packed as root (links followed), unpacked as the service user (test/service-attacks).
    const copy = withPlugins.find((s) => s.kind === 'run' && s.input?.cmd === 'tar');
    expect(copy).toMatchObject({
      input: { args: ['-C', '/home/op/.local/share/usepod-agent', '-chf', '-', '.'] },
      cmd: 'runuser',
      args: ['-u', 'usepod', '--', 'tar', '-C', LINUX_PLUGIN_ROOT, '-xf', '-'],
    });
    // The copy comes before the unit starts.
    expect(withPlugins.indexOf(copy!)).toBeLessThan(lines.indexOf('systemctl restart usepod-agent.service'));
    expect(planService('install', base).some((s) => s.kind === 'run' && s.input?.cmd === 'tar')).toBe(false);
    expect(
      hiddenFromUnit(['/usr/bin/node', '/home/op/.npm-global/lib/node_modules/usepod-agent/bin/run.js']),
    ).toBe('/home/op/.npm-global/lib/node_modules/usepod-agent/bin/run.js');
    expect(hiddenFromUnit(['/tmp/nvm/node'])).toBe('/tmp/nvm/node');
    expect(
      hiddenFromUnit(['/usr/bin/node', '/usr/lib/node_modules/usepod-agent/bin/run.js']),
    ).toBeUndefined();
  });

  it('[update] mode = "auto": the service runs the launcher over a side-by-side folder it sets up first', () => {
    const update = {
      dir: '/var/lib/usepod-agent/update',
      version: '0.4.0',
      launcherSource:
        '/usr/lib/node_modules/usepod-agent/node_modules/@usepod-agent/plugin-update/launcher/launcher.mjs',
      npm: '/usr/bin/npm',
    };
    expect(systemdUnit({ ...base, update })).toContain(
      'ExecStart=/usr/bin/node /var/lib/usepod-agent/update/launcher.mjs --dir /var/lib/usepod-agent/update -- run --config /etc/usepod-agent/agent.toml --log-level debug\n',
    );
    const lines = planService('install', { ...base, update }).map((s) =>
      s.kind === 'run' ? `${s.cmd} ${s.args.join(' ')}` : `${s.kind} ${s.path}`,
    );
    // All as the service user, who owns the folder (test/service-attacks).
    const steps = [
      'runuser -u usepod -- install -d -m 0700 /var/lib/usepod-agent/update /var/lib/usepod-agent/update/versions',
      'runuser -u usepod -- /usr/bin/npm install --prefix /var/lib/usepod-agent/update/versions/0.4.0 --no-audit --no-fund --omit=dev usepod-agent@0.4.0',
      'runuser -u usepod -- ln -sfn versions/0.4.0 /var/lib/usepod-agent/update/.current.tmp',
      'runuser -u usepod -- mv -Tf /var/lib/usepod-agent/update/.current.tmp /var/lib/usepod-agent/update/current',
      `runuser -u usepod -- install -m 0755 ${update.launcherSource} /var/lib/usepod-agent/update/launcher.mjs`,
      'write /etc/systemd/system/usepod-agent.service',
    ];
    // In this order, and all before the unit is written and started.
    expect(steps.map((l) => lines.indexOf(l))).toEqual(
      [...steps.map((l) => lines.indexOf(l))].sort((a, b) => a - b),
    );
    expect(steps.every((l) => lines.includes(l))).toBe(true);
    // Without [update] auto, the unit runs the CLI as before.
    expect(systemdUnit(base)).toContain(`ExecStart=/usr/bin/node ${base.cliPath} run`);
    const mac = planService('install', {
      ...base,
      platform: 'darwin',
      update: { ...update, dir: '/Users/op/.usepod-agent/update' },
    });
    expect(mac.map((s) => (s.kind === 'run' ? `${s.cmd} ${s.args.join(' ')}` : ''))).toContain(
      'ln -sfh versions/0.4.0 /Users/op/.usepod-agent/update/current',
    );
  });

  it('[update] mode = "auto" on Windows: the service runs the launcher over a side-by-side folder of Windows paths, set up first', () => {
    const win = {
      ...base,
      platform: 'win32' as const,
      nodePath: 'C:\\Program Files\\nodejs\\node.exe',
      cliPath: 'C:\\Users\\op\\AppData\\Roaming\\npm\\node_modules\\usepod-agent\\bin\\run.js',
    };
    const update = {
      dir: 'C:\\ProgramData\\usepod-agent\\update',
      version: '0.4.0',
      launcherSource: 'C:\\npm\\plugin-update\\launcher\\launcher.mjs',
      npm: 'C:\\Program Files\\nodejs\\npm.cmd',
    };
    const steps = planService('install', { ...win, update });
    const line = (s: (typeof steps)[number]) =>
      s.kind === 'run' ? [s.cmd, ...s.args].join(' | ') : `${s.kind} ${s.path}`;
    const lines = steps.map(line);
    const create = steps.find((s) => s.kind === 'run' && s.cmd === 'sc.exe' && s.args[0] === 'create');
    // binPath: node, the launcher in the folder, --dir the folder, then the run arguments.
    expect(create?.kind === 'run' && create.args[3]).toBe(
      '"C:\\Program Files\\nodejs\\node.exe" "C:\\ProgramData\\usepod-agent\\update\\launcher.mjs" --dir "C:\\ProgramData\\usepod-agent\\update" -- run --config "C:\\ProgramData\\usepod-agent\\agent.toml" --log-level debug',
    );
    // The folder is set up by this CLI's `update --setup` over the service's config, after that config is
    // written and before the service is created; the log file and restart-on-failure are kept.
    const setup = `C:\\Program Files\\nodejs\\node.exe | ${win.cliPath} | update | --setup | --config | C:\\ProgramData\\usepod-agent\\agent.toml`;
    // Every local user could read what is under ProgramData: the folder is closed to SYSTEM and
    // Administrators before the config and the key go in.
    const acl =
      'icacls.exe | C:\\ProgramData\\usepod-agent | /inheritance:r | /grant:r | *S-1-5-18:(OI)(CI)F | *S-1-5-32-544:(OI)(CI)F';
    const order = [
      acl,
      'write C:\\ProgramData\\usepod-agent\\agent.toml',
      'copy C:\\ProgramData\\usepod-agent\\identity.key',
      setup,
      lines.find((l) => l.startsWith('sc.exe | create'))!,
      lines.find((l) => l.startsWith('reg.exe | add'))!,
      lines.find((l) => l.startsWith('sc.exe | failure'))!,
      'sc.exe | start | ai.usepod.agent',
    ];
    expect(order.map((l) => lines.indexOf(l))).toEqual(
      [...order.map((l) => lines.indexOf(l))].sort((a, b) => a - b),
    );
    expect(order.every((l) => lines.includes(l))).toBe(true);
    const why = steps.find((s) => line(s) === setup)!.why;
    expect(why).toContain('C:\\ProgramData\\usepod-agent\\update\\versions\\0.4.0');
    expect(why).toContain('directory junction');
    // Without [update] auto, the service runs the CLI directly, as before, and sets nothing up.
    const plain = planService('install', win);
    const plainCreate = plain.find((s) => s.kind === 'run' && s.cmd === 'sc.exe' && s.args[0] === 'create');
    expect(plainCreate?.kind === 'run' && plainCreate.args[3]).toBe(
      `"C:\\Program Files\\nodejs\\node.exe" "${win.cliPath}" run --config "C:\\ProgramData\\usepod-agent\\agent.toml" --log-level debug`,
    );
    expect(plain.map(line)).not.toContain(setup);
  });

  it('--dry-run prints every file and command; status exits 3 when not installed', async () => {
    const cfg = join(dir, 'svc.toml');
    await writeFile(cfg, '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n');
    const dry = await cli([
      'service',
      'install',
      '--dry-run',
      '--config',
      cfg,
      '--log-level',
      'warn',
      '--platform',
      'linux',
    ]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('would write /etc/systemd/system/usepod-agent.service (mode 0644)');
    expect(dry.stdout).toContain('would run systemctl restart usepod-agent.service');
    expect(dry.stdout).toContain('run --config /etc/usepod-agent/agent.toml --log-level warn');
    // The V8 flags the CLI's package.json asks for (decision 0008) go before the script: only the
    // command line (or NODE_OPTIONS) sizes the young generation.
    expect(dry.stdout).toMatch(/ExecStart=\S*node\S* --max-semi-space-size=4 \S+run\.js run /);
    expect(dry.stdout).toContain('Dry run: nothing was changed.');
    // [update] mode = "auto" reaches the Windows plan from the config (it ran the CLI directly before).
    const auto = join(dir, 'svc-auto.toml');
    await writeFile(
      auto,
      '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n[update]\nmode = "auto"\n',
    );
    const win = await cli(['service', 'install', '--dry-run', '--config', auto, '--platform', 'win32'], {
      USEPOD_CONTAINER: '0',
    });
    expect(win.code, win.stderr).toBe(0);
    expect(win.stdout).toMatch(
      /would run \S+ \S+ update --setup --config C:\\ProgramData\\usepod-agent\\agent\.toml/,
    );
    expect(win.stdout).toMatch(/binPath= .*update\\+launcher\.mjs\S* --dir \S+update\S* -- run --config/);
    // A path the service definition would carry with a line break in it (the plist's arguments, a
    // unit's command line) is refused in one line, before anything is planned.
    const broken = join(dir, 'svc\nExecStartPre=true\n.toml');
    await writeFile(broken, '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n');
    const refused = await cli([
      'service',
      'install',
      '--dry-run',
      '--config',
      broken,
      '--platform',
      'darwin',
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expect(refused.stderr).toMatch(
      /has a control character or line break, which a service definition cannot hold/,
    );
    expect(refused.stdout).not.toContain('would write');
    const status = await cli(['service', 'status', '--config', cfg, '--platform', 'darwin']);
    expect(status.code).toBe(3);
    expect(status.stderr).toMatch(/the service is not installed/);
  });
});

describe('plugins', () => {
  it('a plugin linked with `plugins link` is listed with its kinds and used by validate and run', async () => {
    const link = await cli(['plugins', 'link', EXAMPLE, '--no-install']);
    expect(link.code, link.stderr).toBe(0);
    const list = await cli(['plugins']);
    expect(list.stdout).toMatch(/usepod-agent-plugin-tgi\s+0\.4\.0\s+kinds: tgi {2}\(linked /);
    expect(list.stdout).toMatch(/@usepod-agent\/plugin-vllm\s+\S+\s+kinds: vllm {2}\(built-in\)/);
    const engine = await new TgiEmulator().start();
    const coordinator = await TestCoordinator.start();
    try {
      const cfg = join(dir, 'tgi.toml');
      await writeFile(
        cfg,
        `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'tgi.key')}"\n[[backends]]\nkind = "tgi"\nurl = "${engine.url}"\n[observability]\nprometheus_addr = "off"\n`,
      );
      const valid = await cli(['validate', '--config', cfg, '--allow-insecure']);
      expect(valid.stdout).toContain('[usepod-agent-plugin-tgi]');
      // service install says which plugins the service will load, and refuses a kind it could not.
      const svc = await cli([
        'service',
        'install',
        '--dry-run',
        '--config',
        cfg,
        '--platform',
        'linux',
        '--allow-insecure',
      ]);
      // Where this checkout lives decides it: a link into a folder the unit hides (a clone under /tmp) is refused.
      const { hiddenFromUnit } = await import('./service/plan.js');
      if (hiddenFromUnit([`${EXAMPLE}/`])) {
        expect(svc.code).toBe(2);
        expect(svc.stderr).toMatch(
          /kind "tgi" .* would not load in the service: its plugin usepod-agent-plugin-tgi is linked from .*, which the service's sandbox hides/,
        );
      } else {
        expect(svc.code, svc.stderr).toBe(0);
        expect(svc.stdout).toContain('The service will load: tgi (usepod-agent-plugin-tgi, linked).');
      }
      const other = join(dir, 'sglang.toml');
      await writeFile(other, '[[backends]]\nkind = "sglang"\nurl = "http://127.0.0.1:30000"\n');
      const refused = await cli([
        'service',
        'install',
        '--dry-run',
        '--config',
        other,
        '--platform',
        'linux',
      ]);
      expect(refused.code).toBe(2);
      // (After the dry run's warning, when this checkout lives where the unit cannot see it.)
      expect(refused.stderr.split('\n').find((l) => l.includes('sglang'))).toMatch(
        /kind "sglang" in .*sglang\.toml would not load in the service: no built-in or installed plugin provides it; install its plugin .*\(USEPOD_PLUGIN_NOT_FOUND\)$/,
      );
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], {
        env,
        cwd: dir,
      });
      const exited = new Promise((r) => child.on('exit', r));
      const session = await coordinator.firstAuthenticated(20_000);
      const caps = await session.capabilities();
      expect(caps.models).toEqual([
        expect.objectContaining({
          model_id: 'HuggingFaceH4/zephyr-7b-beta',
          backend: 'tgi',
          context_window: 4096,
        }),
      ]);
      expect((await session.dispatch({ model_id: 'HuggingFaceH4/zephyr-7b-beta' }).done()).type).toBe(
        'job_done',
      );
      child.kill('SIGTERM');
      await exited;
    } finally {
      await coordinator.close();
      await engine.close();
    }
    const un = await cli(['plugins', 'unlink', 'usepod-agent-plugin-tgi']);
    expect(un.code).toBe(0);
    expect((await cli(['plugins'])).stdout).not.toContain('usepod-agent-plugin-tgi');
  }, 60_000);
});

describe('backends, upgrade, completion', () => {
  it('probes the configured engines and prints a table, or JSON', async () => {
    const engine = await new VllmEmulator({ models: [{ id: 'm1', contextWindow: 8192 }] }).start();
    try {
      const cfg = join(dir, 'b.toml');
      await writeFile(
        cfg,
        `[[backends]]\nkind = "vllm"\nurl = "${engine.url}"\n[[backends]]\nkind = "ollama"\nurl = "http://127.0.0.1:9"\n`,
      );
      const table = await cli(['backends', '--config', cfg, '--no-detect']);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/KIND\s+URL\s+HEALTH\s+LATENCY\s+MODEL\s+CONTEXT\s+LOADED/);
      expect(table.stdout).toMatch(new RegExp(`vllm\\s+${engine.url}\\s+up\\s+\\d+ms\\s+m1\\s+8192\\s+yes`));
      expect(table.stdout).toMatch(/ollama\s+http:\/\/127\.0\.0\.1:9\s+down/);
      const json = JSON.parse((await cli(['backends', '--config', cfg, '--no-detect', '--json'])).stdout);
      expect(json[0]).toMatchObject({
        kind: 'vllm',
        healthy: true,
        models: [{ id: 'm1', context_window: 8192, loaded: true }],
      });
      expect(json[1]).toMatchObject({ kind: 'ollama', healthy: false });
    } finally {
      await engine.close();
    }
  });

  it('upgrade refuses a checkout npm did not install, in one line (the rehearsal upgrades a real install)', async () => {
    const out = await cli(['upgrade', '--dry-run']);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(
      /^usepod-agent: this agent runs from .*packages\/cli, which npm did not install/,
    );
    expect(out.stderr).not.toMatch(/\n\s+at /);
  });

  it('offers shell completion and examples in every --help', async () => {
    expect((await cli(['autocomplete', 'bash'])).stdout).toContain('usepod-agent');
    for (const c of ['run', 'setup', 'validate', 'status', 'backends', 'service install', 'identity']) {
      const help = await cli([...c.split(' '), '--help']);
      expect(help.stdout, c).toContain('EXAMPLES');
    }
  }, 60_000);
});
