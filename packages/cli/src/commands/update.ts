import { join } from 'node:path';
import * as Flags from '@oclif/core/flags';
import { errorMessage, silentLogger } from '@usepod-agent/core';
import { expandHome } from '@usepod-agent/core/cli';
import { control } from '@usepod-agent/plugin-control';
import {
  files,
  readLauncher,
  readView,
  setup,
  type UpdateConfig,
  Updater,
  type UpdateView,
  updateDir,
  updateSection,
  viewRelease,
  writeAtomic,
} from '@usepod-agent/plugin-update';
import { BaseCommand, EXIT, failUsage, jsonFlag } from '../base.js';
import { localTime } from '../when.js';

export default class Update extends BaseCommand {
  static override summary =
    'Show, check, install or roll back this machine’s updates (side by side, health-gated).';
  static override description =
    'Without a flag: the version running, the channel, the last check, what is pending and when, the versions kept and the bad ones ([update] in the config; docs/updates.md). --check asks the registry now. --now installs the channel’s release beside this one and asks the running agent (over its control socket) to drain, jobs in flight finishing within limits.drain_timeout_s, and exit so the launcher switches to it at once; when no agent runs, or not under the launcher, the switch happens at its next start. The launcher keeps the new version only when it authenticates, advertises its models and passes a self-test per model within [update] health_timeout. --rollback asks the launcher to go back to the previous version, at once through the running agent as --now does, else at its next start. --setup makes the side-by-side folder for the version running now and copies the launcher into it.';
  static override examples = [
    '<%= config.bin %> update',
    '<%= config.bin %> update --check',
    '<%= config.bin %> update --now',
    '<%= config.bin %> update --setup',
  ];
  static override flags = {
    check: Flags.boolean({ summary: 'Ask the registry now.', default: false }),
    now: Flags.boolean({
      summary:
        'Install the channel’s release now (no window, no spread) and switch to it once jobs are done.',
      default: false,
    }),
    rollback: Flags.boolean({
      summary: 'Go back to the previous version (the running agent drains first).',
      default: false,
    }),
    setup: Flags.boolean({
      summary: 'Install this version side by side and copy the launcher.',
      default: false,
    }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Update);
    const chosen = (['check', 'now', 'rollback', 'setup'] as const).filter((f) => flags[f]);
    if (chosen.length > 1)
      failUsage(this, `--${chosen.join(' and --')} cannot be used together`, 'give one of them');
    const { config } = await this.readConfig({ ...flags, 'allow-insecure': true });
    const parsed = updateSection.safeParse((config as Record<string, unknown>).update ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      failUsage(
        this,
        `[update] ${issue.path.join('.') || 'section'}: ${issue.message}`,
        'fix it in the config',
      );
    }
    const cfg: UpdateConfig = parsed.data;
    const dir = updateDir(expandHome(config.identity.key_path), cfg.dir);
    const running = this.config.version;

    if (flags.setup) {
      this.out(`Installing usepod-agent ${running} into ${join(dir, 'versions', running)} …`);
      const launcher = await setup(dir, running, cfg.registry);
      this.out(`Ready. Run the agent through the launcher, which switches and rolls back:`);
      this.out(`  ${process.execPath} ${launcher} --dir ${dir} -- run`);
      this.out('`usepod-agent service install` does this for the service.');
      return;
    }
    if (flags.rollback) {
      const v = await readView(dir, cfg, running);
      if (!v.previous) failUsage(this, `no previous version is kept in ${dir}`, 'nothing to roll back to');
      // Kept for the next start whatever the running agent says: the launcher takes it when the agent exits.
      // Renamed over the old (as the agent writes it): a FIFO planted there was waited on for good.
      await writeAtomic(files(dir).switch, { version: v.previous, healthTimeoutMs: cfg.health_timeout });
      const asked = await askRunning(expandHome(config.identity.key_path), v.previous);
      if ('drainS' in asked)
        this.out(
          `The running agent drains (jobs in flight finish within ${asked.drainS} s) and exits; the launcher goes back to ${v.previous}.`,
        );
      else
        this.out(
          `Not switched now: ${asked.why}. The launcher goes back to ${v.previous} at the agent's next start (\`usepod-agent service restart\`).`,
        );
      return;
    }
    const updater = new Updater({
      config: cfg,
      dir,
      running,
      providerId: () => undefined,
      log: silentLogger,
    });
    let held: string | undefined;
    if (flags.check || flags.now) {
      const r = await updater.check();
      if (r.error) this.error(r.error, { exit: EXIT.FAILURE });
      if (r.decision?.do === 'held') held = r.decision.why;
    }
    if (flags.now) {
      const release = await viewRelease(cfg.channel, cfg.registry);
      if (release.version === running) {
        this.report(await readView(dir, cfg, running), flags.json);
        return;
      }
      const bad = (await readLauncher(dir)).bad.find((b) => b.version === release.version);
      if (bad)
        this.error(`${release.version} was rolled back on this machine: it ${bad.reason}`, {
          exit: EXIT.FAILURE,
        });
      // The check's verdict: a plugin with no compatible release holds it back (one with one comes along).
      if (held) this.error(held, { exit: EXIT.FAILURE });
      const along = (await updater.companions(release.version)).map((c) => ` with ${c.name} ${c.version}`);
      this.out(`Installing usepod-agent ${release.version}${along.join(',')} beside ${running} …`);
      await updater.install(release.version);
      // Kept for the next start whatever the running agent says: the launcher takes it when the agent exits.
      await updater.requestSwitch(release.version);
      const asked = await askRunning(expandHome(config.identity.key_path), release.version);
      if ('drainS' in asked)
        this.out(
          `Installed. The running agent drains (jobs in flight finish within ${asked.drainS} s) and exits; the launcher starts ${release.version} and keeps it only if it proves itself healthy within ${Math.round(cfg.health_timeout / 1000)} s.`,
        );
      else
        this.out(
          `Installed; not switched now: ${asked.why}. The launcher switches to ${release.version} at the agent's next start (\`usepod-agent service restart\`), and keeps it only if it proves itself healthy.`,
        );
      return;
    }
    this.report(await readView(dir, cfg, running), flags.json);
  }

  report(v: UpdateView, json: boolean): void {
    if (json) {
      this.printJson(v);
      return;
    }
    const lines = [
      `running   ${v.running}${v.current ? ` (current: ${v.current})` : ''}`,
      `mode      ${v.container ? 'off in a container: updates come with the image tag' : v.mode} (channel ${v.channel})`,
      `checked   ${v.checkedAt ? localTime(v.checkedAt) : 'never'}${v.latest ? `; latest ${v.latest}` : ''}`,
      ...(v.error ? [`error     ${v.error}`] : []),
      ...(v.pending
        ? [
            `pending   ${v.pending.version}${v.pending.installed ? ' (installed)' : ` not before ${localTime(v.pending.at)}`}`,
          ]
        : []),
      ...(v.held ? [`held      ${v.held}`] : []),
      ...v.plugins.map(
        (p) =>
          `plugin    ${p.name} ${p.from ?? '?'} -> ${p.version} comes along with ${v.latest ?? 'the latest'}`,
      ),
      ...(v.trial ? [`on trial  ${v.trial}`] : []),
      `kept      ${v.kept.length > 0 ? v.kept.join(', ') : 'none (not set up: `usepod-agent update --setup`)'}`,
      ...v.bad.map((b) => `bad       ${b.version}: it ${b.reason}`),
    ];
    for (const l of lines) this.out(l);
  }
}

/**
 * Asks the agent running under the launcher, over its control socket, to drain and exit so the launcher
 * switches to `version` now; else why not (no agent, not under the launcher, on trial...).
 */
async function askRunning(keyPath: string, version: string): Promise<{ drainS: number } | { why: string }> {
  return control(keyPath, { cmd: 'update', version }, 15_000).then(
    (r) =>
      r.ok && r.update
        ? { drainS: r.update.drainTimeoutS }
        : { why: `the running agent says ${r.error ?? 'no'}` },
    (err: unknown) => ({ why: errorMessage(err) }),
  );
}
