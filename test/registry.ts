import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@usepod-agent/testkit/real';

/**
 * A real npm registry for tests (verdaccio 6.8, a dev dependency) on 127.0.0.1: our packages are
 * published to it and never proxied; everything else it fetches from the public registry. Used by the
 * release rehearsal and the container tier (a plugin baked into the image by name).
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const upstream = process.env.npm_config_registry ?? 'https://registry.npmjs.org/';

export interface Registry {
  url: string;
  /** Environment for npm children: this registry, a publisher's token, no audit, fund or notifier. */
  npmEnv: NodeJS.ProcessEnv;
  close(): void;
}

/** Starts verdaccio with its storage under `work`, and makes a publisher as `npm adduser` would. */
export { freePort };

export async function startRegistry(work: string): Promise<Registry> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = join(work, 'verdaccio.yaml');
  const ours = { access: '$all', publish: '$authenticated', unpublish: '$authenticated' };
  const yaml = [
    `storage: ${join(work, 'storage')}`,
    'auth:',
    `  htpasswd: { file: ${join(work, 'htpasswd')}, max_users: 10 }`,
    `uplinks:\n  npmjs: { url: ${upstream}, timeout: 60s }`,
    'packages:',
    // Ours are published here and nowhere else: never proxied, so what is installed is what was packed.
    ...['"@usepod-agent/*"', 'usepod-agent', '"usepod-agent-plugin-*"'].map(
      (p) => `  ${p}: ${JSON.stringify(ours)}`,
    ),
    '  "**": { access: $all, proxy: npmjs }',
    'log: { type: stdout, format: pretty, level: warn }',
    'security: { api: { legacy: true } }',
  ].join('\n');
  await writeFile(config, `${yaml}\n`);
  const child: ChildProcess = spawn(
    process.execPath,
    [join(ROOT, 'node_modules/verdaccio/bin/verdaccio'), '--config', config, '--listen', `127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const until = Date.now() + 60_000;
  for (;;) {
    const up = await fetch(`${url}-/ping`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > until || child.exitCode !== null) throw new Error(`verdaccio did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const res = await fetch(`${url}-/user/org.couchdb.user:rehearsal`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'rehearsal', password: 'rehearsal-password', type: 'user', roles: [] }),
  });
  const { token } = (await res.json()) as { token?: string };
  if (!token) throw new Error(`verdaccio gave no token (HTTP ${res.status})`);
  const npmrc = join(work, 'npmrc');
  await writeFile(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`);
  const npmEnv: NodeJS.ProcessEnv = {
    ...process.env,
    npm_config_userconfig: npmrc,
    npm_config_registry: url,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  // vitest's own variables must not reach the children's vitest.
  for (const k of Object.keys(npmEnv)) if (k.startsWith('VITEST') || k === 'NODE_OPTIONS') delete npmEnv[k];
  return { url, npmEnv, close: () => child.kill('SIGKILL') };
}
