import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '@usepod-agent/testkit/real';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { homeEnv, runAgent, cli as runCli, type Scratch, scratch } from './cli.js';

/**
 * `usepod-agent dashboard` and the page of `usepod-agent run` (issue 32), as an operator runs them: the
 * CLI's default plugins serve the dashboard, the printed address carries the token in its fragment (never
 * sent to a server: the page sends it as a header), and
 * without a token yet the command says what to do in one line.
 */

let s: Scratch;
beforeEach(async () => {
  s = await scratch('usepod-dashboard-');
});
afterEach(() => s.close());

const env = () => homeEnv(s.dir);
const keyDir = () => join(s.dir, 'id');
const cli = (args: string[]) => runCli(args, { env: env(), cwd: s.dir });

async function config(port: number, o: { host?: string; extra?: string } = {}): Promise<string> {
  const path = join(s.dir, 'agent.toml');
  await writeFile(
    path,
    `[coordinator]\nurl = "${s.coordinator.url}"\n[identity]\nkey_path = "${join(keyDir(), 'identity.key')}"\n[[backends]]\nkind = "vllm"\nurl = "${s.engine.url}"\n[observability]\nprometheus_addr = "${o.host ?? '127.0.0.1'}:${port}"\n${o.extra ?? ''}`,
  );
  return path;
}

describe('usepod-agent dashboard', () => {
  it('prints the address of the running agent’s page with the token in its fragment, which no server receives', async () => {
    const port = await freePort();
    const cfg = await config(port);
    await runAgent(cfg, { env: env(), cwd: s.dir, coordinator: s.coordinator, children: s.children });
    const r = await cli(['dashboard', '--config', cfg]);
    expect(r.code, r.stderr).toBe(0);
    const token = readFileSync(join(keyDir(), 'status.token'), 'utf8').trim();
    const printed = new URL(r.stdout.trim());
    expect(r.stdout.trim()).toBe(`http://127.0.0.1:${port}/#token=${token}`);
    expect(printed.search).toBe('');
    // The page loads as printed (the fragment stays in the browser), sets no cookie; its API takes the
    // token as the page sends it, a Bearer header.
    const page = await fetch(printed, { redirect: 'manual' });
    expect(page.status).toBe(200);
    expect(page.headers.get('set-cookie')).toBeNull();
    expect(await page.text()).toContain('<title>usepod-agent</title>');
    expect((await fetch(`http://127.0.0.1:${port}/api/state`)).status).toBe(401);
    const api = await fetch(`http://127.0.0.1:${port}/api/state`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(api.status).toBe(200);
    // `status` still reads the agent, and says nothing of the dashboard's own section.
    const st = await cli(['status', '--config', cfg]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/ONLINE/);
    expect(st.stdout).not.toMatch(/^\s+dashboard\s/m);
  });

  it('--fleet prints the fleet table: this agent online, a stopped one unreachable', async () => {
    const port = await freePort();
    const gone = await freePort();
    const cfg = await config(port, {
      extra: `[dashboard]\nname = "box-1"\n[[dashboard.fleet]]\nname = "box-2"\nurl = "http://127.0.0.1:${gone}"\n`,
    });
    await runAgent(cfg, { env: env(), cwd: s.dir, coordinator: s.coordinator, children: s.children });
    const r = await cli(['dashboard', '--config', cfg, '--fleet']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^AGENT\s+STATE\s+MODELS/);
    expect(lines[1]).toMatch(/^box-1\s+online\s+Qwen\/Qwen3-14B/);
    expect(lines[2]).toMatch(/^box-2\s+unreachable: ECONNREFUSED/);
  });

  it('beyond loopback: status sends the agent’s token; a request without it is refused, the probes are not', async () => {
    const port = await freePort();
    const cfg = await config(port, { host: '0.0.0.0' });
    await runAgent(cfg, { env: env(), cwd: s.dir, coordinator: s.coordinator, children: s.children });
    expect((await fetch(`http://127.0.0.1:${port}/status`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const st = await cli(['status', '--config', cfg]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/ONLINE/);
  });

  it('--open hands the browser a private file that redirects: the token is never on a command line', async () => {
    const port = await freePort();
    const cfg = await config(port);
    await runAgent(cfg, { env: env(), cwd: s.dir, coordinator: s.coordinator, children: s.children });
    // A desktop's opener, as every local user's `ps` sees it: its arguments are recorded.
    const bin = join(s.dir, 'bin');
    await mkdir(bin);
    const seen = join(s.dir, 'opener-args');
    await writeFile(
      join(bin, 'xdg-open'),
      `#!/bin/sh\nprintf '%s\\n' "$@" > "${seen}.tmp" && mv "${seen}.tmp" "${seen}"\n`,
      {
        mode: 0o755,
      },
    );
    const r = await runCli(['dashboard', '--config', cfg, '--open'], {
      env: homeEnv(s.dir, { PATH: `${bin}:${process.env.PATH}` }),
      cwd: s.dir,
    });
    expect(r.code, r.stderr).toBe(0);
    const token = readFileSync(join(keyDir(), 'status.token'), 'utf8').trim();
    await vi.waitFor(() => expect(existsSync(seen)).toBe(true), { timeout: 10_000 });
    const args = readFileSync(seen, 'utf8').trim().split('\n');
    expect(args).toEqual([join(keyDir(), 'dashboard.html')]);
    expect(args.join(' ')).not.toContain(token);
    // The file: only this user reads it, and it sends the browser to the address with the token.
    expect(statSync(args[0]!).mode & 0o777).toBe(0o600);
    const html = readFileSync(args[0]!, 'utf8');
    expect(html).toContain(`http://127.0.0.1:${port}/#token=${token}`);
    expect(html).toMatch(/http-equiv="refresh"/);
  });

  it('without a token yet says in one line to start the agent once', async () => {
    const cfg = await config(await freePort());
    const r = await cli(['dashboard', '--config', cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no status token at .*status\.token: start the agent once/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
