import { errorMessage, type LoadedConfig } from '@usepod-agent/core';
import { BaseCommand, EXIT, jsonFlag } from '../base.js';
import {
  authCheck,
  backendChecks,
  type Check,
  coordinatorChecks,
  folded,
  identityChecks,
  selftestChecks,
} from '../doctor.js';
import { offlineAgent } from '../engines.js';

export default class Doctor extends BaseCommand {
  static override summary =
    'Check everything that stands between this machine and earning, with the fix for each.';
  static override description =
    "Checks the config, the identity, the way to the coordinator step by step (DNS, TCP, TLS, WebSocket upgrade, clock, authentication), each backend and what it advertises or drops and why, the prices, and from the ledger the jobs missed in the last 24 hours and why. Prints ok / warn / fail with one line of fix each; exits 1 when something blocks earning. When an agent runs with this identity, it authenticates as that agent does not: the running agent's own connection is what counts.";
  static override examples = [
    '<%= config.bin %> doctor',
    '<%= config.bin %> doctor --config /etc/usepod-agent/agent.toml --json',
  ];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Doctor);
    const checks: Check[] = [];
    let config: LoadedConfig['config'] | undefined;
    try {
      const loaded = await this.readConfig(flags);
      config = loaded.config;
      checks.push({ name: 'config', level: 'ok', detail: loaded.path });
      for (const w of loaded.warnings) checks.push({ name: 'config', level: 'warn', detail: w });
    } catch (err) {
      checks.push({
        name: 'config',
        level: 'fail',
        detail: (err as Error).message,
        fix: 'fix the config, then run doctor again',
      });
    }
    if (config) {
      checks.push(...(await identityChecks(config)));
      const net = await coordinatorChecks(config);
      checks.push(...net.checks);
      if (net.reachable) checks.push(await authCheck(config, flags['allow-insecure'] ?? false));
      // Plugins loaded and entries checked as `validate` and `run` do: a mistake is one line, at its place.
      const agent = await offlineAgent(this.config, config);
      try {
        await agent.load();
        const backends = await backendChecks(this.config, config);
        checks.push(...backends.checks);
        checks.push(...(await selftestChecks(config)));
        const capacity = backends.probes.reduce((n, p) => n + (p.status.load?.capacity ?? 0), 0);
        // Each plugin's own lines (the ledger's missed jobs, a GPU rule...). They quote what it read (a
        // ledger's model ids, a process name): folded like doctor's own.
        const lines = await agent.doctor({ engineCapacity: capacity > 0 ? capacity : undefined });
        checks.push(...lines.map(folded));
      } catch (err) {
        checks.push({
          name: 'plugins',
          level: 'fail',
          detail: errorMessage(err),
          fix: '`usepod-agent validate` says the same; fix that, then run doctor again',
        });
      }
    }
    const blocked = checks.some((c) => c.level === 'fail');
    if (flags.json) {
      this.printJson({ ok: !blocked, checks });
    } else {
      const width = Math.max(...checks.map((c) => c.name.length));
      for (const c of checks) {
        this.out(`${c.level.toUpperCase().padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`);
        if (c.fix) this.out(`${' '.repeat(6 + width)}  fix: ${c.fix}`);
      }
      this.out(
        blocked
          ? '\nSomething above stops this agent from earning.'
          : '\nNothing stops this agent from earning.',
      );
    }
    if (blocked) this.exit(EXIT.FAILURE);
  }
}
