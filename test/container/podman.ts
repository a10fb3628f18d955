import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Podman as this machine kind runs it (issue 20): runc, not crun (which refuses the hybrid cgroups); the
 * host's network; the limits it may not raise. No image registry is reachable, so the base image is a
 * Debian bookworm made with debootstrap, with this host's Node.js 20 copied in.
 */
export const RUN_FLAGS = [
  '--runtime',
  'runc',
  '--network',
  'host',
  '--ulimit',
  'nofile=1024:1024',
  '--ulimit',
  'nproc=1024:1024',
];
export const BASE_IMAGE = 'localhost/usepod-test-base:node20';
export const AGENT_IMAGE = 'localhost/usepod-agent:test';

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<Ran> {
  return new Promise((resolve) =>
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 600_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr }),
    ),
  );
}

export async function must(r: Promise<Ran>, what: string): Promise<string> {
  const ran = await r;
  if (ran.code !== 0)
    throw new Error(`${what} failed (exit ${ran.code}):\n${(ran.stdout + ran.stderr).slice(-4000)}`);
  return ran.stdout;
}

export const podman = (...args: string[]) => sh('podman', args);

async function has(cmd: string): Promise<boolean> {
  return (await sh('sh', ['-c', `command -v ${cmd}`])).code === 0;
}

/** podman, runc and debootstrap, from Debian's packages when missing (CI starts on a machine without them). */
export async function ensureTools(): Promise<void> {
  const missing = [];
  for (const [cmd, pkg] of [
    ['podman', 'podman'],
    ['runc', 'runc'],
    ['debootstrap', 'debootstrap'],
  ] as const) {
    if (!(await has(cmd))) missing.push(pkg);
  }
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `the container test needs ${missing.join(', ')}: apt-get install -y ${missing.join(' ')}`,
    );
  }
  await must(
    sh('apt-get', ['install', '-y', '--no-install-recommends', ...missing]),
    `apt-get install ${missing}`,
  );
}

/**
 * The stand-in for the official node:20-bookworm-slim: debootstrap's minbase, this host's node and npm
 * under /usr/local as the official image has them, and this host's CA bundle (its registry traffic goes
 * through a proxy that re-signs TLS; NODE_EXTRA_CA_CERTS says so on the host too).
 */
export async function ensureBaseImage(): Promise<void> {
  if ((await podman('image', 'exists', BASE_IMAGE)).code === 0) return;
  const dir = await mkdtemp(join(tmpdir(), 'usepod-base-'));
  try {
    const root = join(dir, 'root');
    await must(
      sh('debootstrap', ['--variant=minbase', 'bookworm', root, 'http://deb.debian.org/debian']),
      'debootstrap',
    );
    await rm(join(root, 'var/cache/apt/archives'), { recursive: true, force: true });
    await copyFile(process.execPath, join(root, 'usr/local/bin/node'));
    await mkdir(join(root, 'usr/local/lib/node_modules'), { recursive: true });
    await must(
      sh('cp', ['-a', '/usr/lib/node_modules/npm', join(root, 'usr/local/lib/node_modules/')]),
      'copy npm',
    );
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx'));
    // Node's headers where the official image has them: native modules build against them offline
    // (node-gyp would download them from nodejs.org, which this machine cannot reach).
    await mkdir(join(root, 'usr/local/include'), { recursive: true });
    await must(sh('cp', ['-a', '/usr/include/node', join(root, 'usr/local/include/')]), 'copy node headers');
    const env = [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'ENV npm_config_nodedir=/usr/local',
    ];
    const ca = process.env.NODE_EXTRA_CA_CERTS;
    if (ca) {
      await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
      await copyFile(ca, join(root, 'etc/ssl/certs/usepod-host-ca.crt'));
      await mkdir(join(root, 'usr/local/etc'), { recursive: true });
      await writeFile(join(root, 'usr/local/etc/npmrc'), 'cafile=/etc/ssl/certs/usepod-host-ca.crt\n');
      env.push('ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/usepod-host-ca.crt');
    }
    const changes = [...env, 'CMD ["node"]'].flatMap((c) => ['--change', c]);
    await must(
      sh('sh', [
        '-c',
        `tar -C "${root}" -c . | podman import ${changes.map((c) => `'${c}'`).join(' ')} - ${BASE_IMAGE}`,
      ]),
      'podman import',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Builds the repository's Dockerfile on the local base; the host's npm cache stands in for a cache mount. */
export async function buildImage(
  root: string,
  opts: { tag?: string; args?: Record<string, string> } = {},
): Promise<void> {
  const home = process.env.HOME ?? '/root';
  await must(
    sh(
      'podman',
      [
        'build',
        '--runtime',
        'runc',
        '--network',
        'host',
        '--format',
        'docker',
        '--ulimit',
        'nofile=1024:1024',
        '--ulimit',
        'nproc=1024:1024',
        '--build-arg',
        `BASE=${BASE_IMAGE}`,
        ...Object.entries(opts.args ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
        '-v',
        `${join(home, '.npm')}:/root/.npm`,
        '-t',
        opts.tag ?? AGENT_IMAGE,
        '.',
      ],
      { cwd: root },
    ),
    'podman build',
  );
}
