import { createLogger, engineText } from '@usepod-agent/core';
import { expandHome, readIdentity } from '@usepod-agent/core/cli';
import { BaseCommand, EXIT, jsonFlag } from '../../base.js';

export default class AlertsTest extends BaseCommand {
  static override summary = 'Send one test alert to every [[alerts]] webhook, now.';
  static override description =
    'Each webhook gets a message in its own format (JSON, ntfy, Discord, Slack), past the rate limit, with one retry; the result of each is printed. Exits 1 when one was not delivered.';
  static override examples = ['<%= config.bin %> alerts test', '<%= config.bin %> alerts test --json'];
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(AlertsTest);
    const { config, path } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const entries = Array.isArray(config.alerts) ? (config.alerts as unknown[]) : [];
    if (entries.length === 0) {
      this.out(`No [[alerts]] in ${path}: add one (docs/operating.md, "Alerts").`);
      return;
    }
    const { sendTestAlerts } = await import('@usepod-agent/plugin-alerts');
    const identity = await readIdentity(expandHome(config.identity.key_path)).catch(() => undefined);
    const results = await sendTestAlerts(entries, {
      source: config.source,
      log: createLogger('alerts'),
      providerId: identity?.providerId,
    });
    if (flags.json) this.printJson(results);
    else {
      for (const r of results) {
        const what = r.ok
          ? `delivered (HTTP ${r.status})`
          : `NOT delivered: ${engineText(r.why ?? 'failed', 120)}`;
        this.out(`${r.target}  ${what}`);
      }
    }
    if (results.some((r) => !r.ok)) this.exit(EXIT.FAILURE);
  }
}
