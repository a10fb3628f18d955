import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCoordinator, WebhookReceiver } from '@usepod-agent/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, cli, homeEnv } from './cli.js';

/**
 * Alerts through the CLI: `validate`, `alerts test`, and `run` applying the shipped plugin. The plugin's
 * own behaviour is tested in its package (packages/plugin-alerts/src/*.test.ts).
 */

let receiver: WebhookReceiver;
beforeEach(async () => {
  receiver = await new WebhookReceiver().start();
});
afterEach(async () => {
  await receiver.close();
});

describe('alerts in the CLI', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'usepod-alerts-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const env = () => homeEnv(dir);

  it('validate names a mistake in [[alerts]] at its line, and lists the webhooks without their secrets', async () => {
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[[alerts]]\nurl = "https://discord.com/api/webhooks/1/secret"\nformat = "discord"\n\n[[alerts]]\nurl = "https://ntfy.sh/topic"\nformat = "telegram"\n`,
    );
    const bad = await cli(['validate', '--config', cfg], { env: env(), cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')[0]).toMatch(
      new RegExp(
        `^usepod-agent: ${cfg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:7:1: alerts\\[1\\]\\.format: .*\\(USEPOD_CONFIG_INVALID\\)$`,
      ),
    );
    await writeFile(
      cfg,
      `[[alerts]]\nurl = "https://discord.com/api/webhooks/1/secret"\nformat = "discord"\n`,
    );
    const ok = (await cli(['validate', '--config', cfg], { env: env(), cwd: dir })).stdout;
    expect(ok).toMatch(/\[alerts\]\s+\[@usepod-agent\/plugin-alerts\]/);
    expect(ok).not.toContain('secret');
  });

  it('alerts test sends one message to each webhook in its format, and says which failed', async () => {
    receiver.script.push({ status: 404 }, { status: 404 });
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[[alerts]]\nurl = "${receiver.url('/broken')}"\nname = "old hook"\n\n[[alerts]]\nurl = "${receiver.url('/my-topic')}"\nformat = "ntfy"\n`,
    );
    // Both are refused (404, not retried): each is a line, the named one by its name.
    const out = await cli(['alerts', 'test', '--config', cfg], { env: env(), cwd: dir });
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(/^old hook {2}NOT delivered: HTTP 404$/m);
    expect(out.stdout).toMatch(/^ntfy http:\/\/127\.0\.0\.1:\d+\/… {2}NOT delivered: HTTP 404$/m);
    receiver.script.length = 0;
    receiver.script.push({ status: 404 });
    await writeFile(cfg, `[[alerts]]\nurl = "${receiver.url('/my-topic')}"\nformat = "ntfy"\n`);
    const ok = await cli(['alerts', 'test', '--config', cfg], { env: env(), cwd: dir });
    // The first answer was a 404: no retry for a refusal, so the one scripted 404 is all it met.
    expect(ok.stdout).toMatch(/^ntfy http:\/\/127\.0\.0\.1:\d+\/… {2}NOT delivered: HTTP 404$/m);
    const good = await cli(['alerts', 'test', '--config', cfg], { env: env(), cwd: dir });
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/^ntfy http:\/\/127\.0\.0\.1:\d+\/… {2}delivered \(HTTP 200\)$/m);
    expect(receiver.got.at(-1)!.body).toMatchObject({
      topic: 'my-topic',
      title: expect.stringMatching(/: test alert$/),
      priority: 3,
    });
  });

  it('run applies the shipped plugin: a backend down at start reaches the webhook', async () => {
    const coordinator = await TestCoordinator.start();
    const cfg = join(dir, 'agent.toml');
    await writeFile(
      cfg,
      `[coordinator]\nurl = "${coordinator.url}"\n[identity]\nkey_path = "${join(dir, 'id', 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n[observability]\nprometheus_addr = ""\n[[alerts]]\nurl = "${receiver.url('/hook')}"\nevents = ["backend_down"]\n`,
    );
    // The backend is down from the start, so nothing to wait for but the webhook.
    const child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], { env: env() });
    try {
      const [got] = await receiver.wait(1, 20_000);
      expect(got!.body).toMatchObject({ event: 'backend_down', details: { kind: 'vllm' } });
    } finally {
      child.kill('SIGKILL');
      await coordinator.close();
    }
  });
});
