import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_PACKAGE, installVersion, npmWhy, run } from './npm.js';

/** npm 10's stderr for two failures, as a registry that is down or has no such package makes them. */
const refused = (log: string) => `npm error code ECONNREFUSED
npm error syscall connect
npm error errno ECONNREFUSED
npm error FetchError: request to http://127.0.0.1:9/usepod-agent failed, reason: connect ECONNREFUSED 127.0.0.1:9
npm error
npm error If you are behind a proxy, please make sure that the
npm error 'proxy' config is set properly.  See: 'npm help config'
npm error A complete log of this run can be found in: /root/.npm/_logs/${log}-debug-0.log
`;
const notFound = `npm error code E404
npm error 404 Not Found - GET http://127.0.0.1:33557/usepod-agent
npm error 404
npm error 404  The requested resource 'usepod-agent@latest' could not be found or you do not have permission to access it.
npm error 404 tarball, folder, http url, or git url.
npm error A complete log of this run can be found in: /root/.npm/_logs/2026-12-06T23_43_26_977Z-debug-0.log
`;

describe('npmWhy', () => {
  it('says the code and the line that says why, never the log file (a new name every run)', () => {
    expect(npmWhy(refused('2026-12-06T23_42_10_550Z'))).toBe(
      'ECONNREFUSED: FetchError: request to http://127.0.0.1:9/usepod-agent failed, reason: connect ECONNREFUSED 127.0.0.1:9',
    );
    // The same failure twice reads the same: the updater says it once.
    expect(npmWhy(refused('2026-12-06T23_42_11_893Z'))).toBe(npmWhy(refused('2026-12-06T23_42_10_550Z')));
    expect(npmWhy(notFound)).toBe('E404: 404 Not Found - GET http://127.0.0.1:33557/usepod-agent');
  });

  it('without a code line, the last error line; without any, "no output"', () => {
    expect(npmWhy('npm error something went wrong here\nnpm error and then this failed too\n')).toBe(
      'npm error and then this failed too',
    );
    expect(npmWhy('')).toBe('no output');
  });
});

/** What a hung native build looks like: npm's child starts one more process, which keeps npm's output
 * open and never ends; then the child hangs too. Returns npm's answer and the state of that process.
 * With `stopWhenRunning`, the agent stops (the signal) once that process runs: the event, not a guess at
 * how long npm takes to start on a loaded machine. */
async function hungScript(o: { timeoutMs: number; stopWhenRunning?: boolean }) {
  const dir = mkdtempSync(join(tmpdir(), 'usepod-npm-hang-'));
  try {
    const pidFile = join(dir, 'grandchild.pid');
    const grandchild = () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0);
    const script = `const c = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' }); require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid)); setInterval(() => {}, 1000);`;
    const stopping = new AbortController();
    const ran = run(['exec', '--yes', '--', 'node', '-e', script], {
      timeoutMs: o.timeoutMs,
      signal: stopping.signal,
    });
    if (o.stopWhenRunning) {
      for (const end = Date.now() + 20_000; grandchild() <= 0 && Date.now() < end; )
        await new Promise((r) => setTimeout(r, 50));
      stopping.abort();
    }
    const r = await ran;
    // The script ran and started its child before npm was ended (else there is nothing to judge).
    const pid = grandchild();
    expect(pid, `npm ended before its script started its child:\n${r.stderr}`).toBeGreaterThan(0);
    const stat = `/proc/${pid}/stat`;
    const state = existsSync(stat) ? readFileSync(stat, 'utf8').split(') ')[1]?.[0] : undefined;
    return { r, state };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('npm, run by the updater', () => {
  it.skipIf(process.platform === 'win32')(
    'is killed with everything it started at its deadline (a hung install script holding its output open)',
    async () => {
      // The deadline must fall after npm has started its script (0.4-0.6 s here with four busy loops on
      // the two cores, longer beside the whole suite): 5 s, not 3 s, and a clear failure if it did not.
      const { r, state } = await hungScript({ timeoutMs: 5_000 });
      // Gone, or a zombie no one here reaps: not running either way.
      expect(state === undefined || state === 'Z', `the script's process is ${state}`).toBe(true);
      expect(r.code).not.toBe(0);
      expect(npmWhy(r.stderr)).toMatch(/timed out after 5 s/);
    },
    30_000,
  );

  it.skipIf(process.platform === 'win32')(
    'is killed with everything it started when the agent stops',
    async () => {
      const { r, state } = await hungScript({ timeoutMs: 60_000, stopWhenRunning: true });
      expect(state === undefined || state === 'Z', `the script's process is ${state}`).toBe(true);
      expect(npmWhy(r.stderr)).toMatch(/the agent is stopping/);
    },
    30_000,
  );
});

/**
 * A registry on 127.0.0.1 serving `usepod-agent@9.9.9` (its install script runs `script` in its folder)
 * and `usepod-agent-plugin-x@1.0.0`, as npm fetches them: a packument, then a tarball.
 */
async function tinyRegistry(work: string, script: string): Promise<{ url: string; close: () => void }> {
  const tarballs = new Map<string, Buffer>();
  const packuments = new Map<string, object>();
  const server = createServer((req, res) => {
    const name = decodeURIComponent(req.url?.slice(1) ?? '');
    const tgz = tarballs.get(name);
    if (tgz) return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tgz);
    const doc = packuments.get(name);
    if (doc) return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    res.writeHead(404, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  for (const [name, manifest] of [
    [CLI_PACKAGE, { bin: { 'usepod-agent': 'bin/run.js' }, scripts: { install: script } }],
    ['usepod-agent-plugin-x', {}],
  ] as const) {
    const version = name === CLI_PACKAGE ? '9.9.9' : '1.0.0';
    const pkg = join(work, name, 'package');
    mkdirSync(join(pkg, 'bin'), { recursive: true });
    writeFileSync(join(pkg, 'bin', 'run.js'), '');
    const meta = { name, version, ...manifest };
    writeFileSync(join(pkg, 'package.json'), JSON.stringify(meta));
    execFileSync('tar', ['-czf', join(work, `${name}.tgz`), '-C', join(work, name), 'package']);
    tarballs.set(`${name}.tgz`, readFileSync(join(work, `${name}.tgz`)));
    packuments.set(name, {
      name,
      'dist-tags': { latest: version },
      versions: { [version]: { ...meta, dist: { tarball: `${url}${name}.tgz` } } },
    });
  }
  return { url, close: () => server.close() };
}

describe('installVersion', () => {
  it.skipIf(process.platform === 'win32')(
    "runs npm, and the install scripts of what it installs, without the agent's enrollment code",
    async () => {
      const work = mkdtempSync(join(tmpdir(), 'usepod-npm-env-'));
      const cache = process.env.npm_config_cache;
      process.env.npm_config_cache = join(work, 'cache');
      // A container's way to give the code (a Kubernetes Secret); the updater's npm needs none of it.
      process.env.USEPOD_ENROLLMENT_CODE = 'POD-ENROLL-ENVTEST9';
      const seen = join(work, 'env.txt');
      const reg = await tinyRegistry(work, `env > ${seen}`);
      try {
        await installVersion(join(work, 'versions'), '9.9.9', reg.url);
        const env = readFileSync(seen, 'utf8');
        // Before: the release's install script (and every dependency's) read it from its environment.
        expect(env).not.toContain('POD-ENROLL-ENVTEST9');
        expect(env).toContain(`npm_config_cache=${join(work, 'cache')}`);
      } finally {
        reg.close();
        delete process.env.USEPOD_ENROLLMENT_CODE;
        if (cache === undefined) delete process.env.npm_config_cache;
        else process.env.npm_config_cache = cache;
        rmSync(work, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it.skipIf(process.platform === 'win32')(
    'removes its half install when a step after npm fails (a full disk under the plugin list), and when npm fails',
    async () => {
      const work = mkdtempSync(join(tmpdir(), 'usepod-npm-install-'));
      // npm's cache of its own: nothing of these stand-ins lands in the user's.
      const cache = process.env.npm_config_cache;
      process.env.npm_config_cache = join(work, 'cache');
      // The install script makes a folder where the plugin list goes: its write fails (EISDIR) as ENOSPC does.
      const reg = await tinyRegistry(work, 'mkdir ../../usepod-plugins.json');
      try {
        const versions = join(work, 'update', 'versions');
        const plugin = [{ name: 'usepod-agent-plugin-x', version: '1.0.0' }];
        await expect(installVersion(versions, '9.9.9', reg.url, plugin)).rejects.toThrow(/EISDIR/);
        expect(readdirSync(versions)).toEqual([]);
        // npm itself failing (a version the registry does not have) leaves nothing either.
        await expect(installVersion(versions, '9.9.8', reg.url)).rejects.toThrow(
          /npm install usepod-agent@9.9.8 failed/,
        );
        expect(readdirSync(versions)).toEqual([]);
        // Without plugins, the same release installs: the registry and npm work.
        expect(await installVersion(versions, '9.9.9', reg.url)).toBe(join(versions, '9.9.9'));
        expect(readdirSync(versions)).toEqual(['9.9.9']);
      } finally {
        reg.close();
        if (cache === undefined) delete process.env.npm_config_cache;
        else process.env.npm_config_cache = cache;
        rmSync(work, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
