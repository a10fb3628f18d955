import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import * as Flags from '@oclif/core/flags';
import { AGENT_VERSION, errorMessage, readLocalText, UsepodError } from '@usepod-agent/core';
import {
  DEFAULT_IDENTITY_PATH,
  expandHome,
  loadOrCreateIdentity,
  MAX_CONFIG_BYTES,
  platformConfigDir,
  validateConfig,
  writeFileAtomic,
} from '@usepod-agent/core/cli';
import { parse as parseToml, stringify } from 'smol-toml';
import { BaseCommand } from '../base.js';
import {
  builtinPlugins,
  modelIdHint,
  oneTargetPerEngine,
  type ProbeResult,
  parseEngineFlag,
  probeEngines,
  wellKnownEngines,
} from '../engines.js';
import {
  coordinatorUrlFor,
  issuePairing,
  type ModelConfig,
  PRODUCTION_BASE,
  pairPageFor,
  pollPairing,
} from '../pairing.js';
import { agentPlugins } from '../plugins.js';
import { box, spinner } from '../ui.js';
import { localTime } from '../when.js';

/** How long setup waits for the code to be entered at most: the code's 10 minutes and a margin. */
const MAX_WAIT_S = 15 * 60;

export default class Setup extends BaseCommand {
  static override summary = 'Pair this machine with your Use Pod account and write the config file.';
  static override description =
    `Finds the inference engines running here on the ports their plugins name (\`usepod-agent backends\` lists them), asks the coordinator for a pairing code, and waits while you enter it on the Use Pod website. Once paired it writes a complete agent.toml (coordinator, identity, the engines found, your prices) and tells you how to run.`;
  static override examples = [
    '<%= config.bin %> setup',
    '<%= config.bin %> setup --config /etc/usepod-agent/agent.toml --force',
    '<%= config.bin %> setup --engine KIND=http://10.0.0.5:8000 --no-detect   # a kind that `plugins` lists',
  ];
  static override flags = {
    coordinator: Flags.string({
      summary: 'HTTPS base URL of the coordinator.',
      default: PRODUCTION_BASE,
      helpValue: 'URL',
    }),
    config: Flags.string({
      char: 'c',
      summary: 'Where to write the config (default: the platform config dir).',
      helpValue: 'PATH',
    }),
    identity: Flags.string({
      summary: 'Identity key file (created when missing).',
      default: DEFAULT_IDENTITY_PATH,
      helpValue: 'PATH',
    }),
    force: Flags.boolean({ summary: 'Replace an existing config file (a backup is kept).', default: false }),
    engine: Flags.string({
      summary: 'Also probe this engine (repeatable).',
      multiple: true,
      helpValue: 'KIND=URL',
    }),
    detect: Flags.boolean({ summary: 'Probe the usual local ports.', default: true, allowNo: true }),
    'poll-interval': Flags.integer({ hidden: true, default: 800, min: 10 }),
    /** Seconds of "pending" at most, whatever `expires_at` says (tests shorten it). */
    'wait-limit': Flags.integer({ hidden: true, default: MAX_WAIT_S, min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Setup);
    const base = flags.coordinator.replace(/\/+$/, '');
    try {
      new URL(base);
    } catch {
      throw new UsepodError('USEPOD_USAGE', `--coordinator is not a URL: ${base}`, { user: true });
    }
    const target = resolve(expandHome(flags.config ?? join(platformConfigDir(), 'agent.toml')));
    if (existsSync(target) && !flags.force) {
      throw new UsepodError(
        'USEPOD_USAGE',
        `a config already exists at ${target}; pass --force to replace it (a backup is kept)`,
        {
          user: true,
        },
      );
    }
    // The config replaced is read now, before pairing, as the agent reads a config (a regular file, at
    // most 1 MB): a FIFO there was waited on for good by the backup's copy, after the code was entered.
    const previous = await readLocalText(target, MAX_CONFIG_BYTES);
    if (previous.kind === 'refused') {
      throw new UsepodError(
        'USEPOD_CONFIG_UNREADABLE',
        `config file ${target} ${previous.why}: setup replaces only a config file; remove it, or pass --config another path`,
        { user: true },
      );
    }
    const { identity, created, permissionWarning } = await loadOrCreateIdentity(flags.identity);
    if (permissionWarning) process.stderr.write(`warning: ${permissionWarning}\n`);
    this.out(
      created
        ? `Created identity ${identity.path} (${identity.fingerprint}).`
        : `Using identity ${identity.path} (${identity.fingerprint}).`,
    );

    // 1. Engines
    const plugins = [...(await builtinPlugins()), ...(await agentPlugins(this.config))];
    // The operator's own names first, so theirs is the one kept when the scan finds the same engine.
    const targets = oneTargetPerEngine([
      ...(flags.engine ?? []).map((v) => ({ ...parseEngineFlag(v), source: 'flag' as const })),
      ...(flags.detect
        ? (await wellKnownEngines(plugins)).map((e) => ({ ...e, source: 'detected' as const }))
        : []),
    ]);
    const found = (await probeEngines(targets, plugins)).filter((r) => r.status.healthy);
    this.out('');
    if (found.length === 0) {
      this.out('No engine answered. You can pair now and add [[backends]] to the config later.');
    } else {
      this.out('Engines found:');
      for (const f of found)
        this.out(
          `  ${f.kind.padEnd(9)} ${f.url}  ${f.status.models.map((m) => m.id).join(', ') || '(no models loaded)'}`,
        );
      for (const hint of found.flatMap((f) => f.status.models.map((m) => modelIdHint(m.id, f.naming))))
        if (hint) this.out(`  hint: ${hint}`);
    }

    // 2. Pairing code
    const issued = await issuePairing(base, identity.publicKey);
    const page = pairPageFor(base);
    this.out('');
    this.out(
      box([
        'Pair this agent with your Use Pod account:',
        '',
        `  1. Open   ${page}`,
        `  2. Enter  ${issued.pair_code}`,
        '',
        `The code expires at ${localTime(issued.expires_at)}.`,
      ]),
    );
    this.out('');

    // 3. Wait
    const capabilities = {
      backends: found.map((f) => ({ kind: f.kind, url: f.url!, models: f.status.models.map((m) => m.id) })),
      agent_version: AGENT_VERSION,
    };
    // The code lives 10 minutes (PROTOCOL.md 9). A coordinator that answers "pending" for good, with an
    // `expires_at` far off or unreadable, would keep setup waiting for good: it waits 15 minutes at most,
    // on the monotonic clock (a clock stepped back must not stretch it).
    const expiresIn = Date.parse(issued.expires_at) - Date.now();
    const waitMs = Math.min(
      Number.isNaN(expiresIn) ? Infinity : Math.max(0, expiresIn),
      flags['wait-limit'] * 1000,
    );
    const waitFrom = performance.now();
    const spin = spinner(process.stderr, `Waiting for the code to be entered at ${page} ...`);
    let result: Awaited<ReturnType<typeof pollPairing>>;
    try {
      for (;;) {
        result = await pollPairing(base, issued.poll_token, capabilities);
        if (result.status !== 'pending') break;
        if (performance.now() - waitFrom > waitMs) {
          result = { status: 'expired' };
          break;
        }
        await new Promise((r) => setTimeout(r, flags['poll-interval']));
      }
    } finally {
      spin.stop();
    }
    if (result.status === 'expired') {
      throw new UsepodError(
        'USEPOD_PAIRING_EXPIRED',
        'the pairing code expired before it was entered; run `usepod-agent setup` again',
        {
          user: true,
        },
      );
    }

    // 4. Config
    identity.providerId = result.provider_id;
    await identity.save();
    const toml = renderConfig({ base, keyPath: identity.path, found, modelConfig: result.model_config });
    // What we write must load: validate before touching the file.
    validateConfig(parseToml(toml), { allowInsecure: true, source: target });
    try {
      await mkdir(dirname(target), { recursive: true });
      if (previous.kind === 'text') {
        const backup = `${target}.bak-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        // 0600: the config it was may hold an enrollment code.
        await writeFileAtomic(backup, previous.text, 0o600);
        this.out(`Kept the previous config as ${backup}`);
      }
      await writeFileAtomic(target, toml, 0o644);
    } catch (err) {
      // Paired already (the provider id is in the identity file): say so, and what to do, in one line.
      const why = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
      throw new UsepodError(
        'USEPOD_CONFIG_WRITE',
        `paired as provider ${result.provider_id} (saved in ${identity.path}), but the config ${target} could not be written (${why}): free space on its disk, then run \`usepod-agent setup\` again`,
        { user: true, cause: err },
      );
    }
    this.out(`Paired as provider ${result.provider_id}. Config written to ${target}`);
    this.out('');
    this.out('Next:');
    const insecure = coordinatorUrlFor(base).startsWith('ws:') ? ' --allow-insecure' : '';
    this.out(`  usepod-agent run --config ${target}${insecure}            # serve now, in this terminal`);
    this.out(`  sudo usepod-agent service install --config ${target}   # or run it as a system service`);
  }
}

export function renderConfig(o: {
  base: string;
  keyPath: string;
  found: ProbeResult[];
  modelConfig: ModelConfig[];
}): string {
  const models: Record<string, Record<string, number>> = {};
  for (const m of o.modelConfig) {
    models[m.model_id] = {
      input_per_1m: m.input_per_1m,
      output_per_1m: m.output_per_1m,
      ...(m.max_concurrent ? { max_concurrent: m.max_concurrent } : {}),
    };
  }
  const maxConcurrent = Math.max(0, ...o.modelConfig.map((m) => m.max_concurrent ?? 0));
  const backends = oneTargetPerEngine(o.found).map((f) => ({ kind: f.kind, url: f.url! }));
  const doc = {
    coordinator: { url: coordinatorUrlFor(o.base) },
    identity: { key_path: o.keyPath },
    ...(backends.length ? { backends } : {}),
    pricing: { default_input_per_1m: 500_000, default_output_per_1m: 750_000, models },
    limits: { max_concurrent: maxConcurrent > 0 ? Math.min(256, maxConcurrent) : 8 },
    observability: { prometheus_addr: '127.0.0.1:9090', log_level: 'info' },
  };
  return `# Written by \`usepod-agent setup\` on ${new Date().toISOString()}.\n# Every key is described in the README (Configuration).\n\n${stringify(doc)}\n`;
}
