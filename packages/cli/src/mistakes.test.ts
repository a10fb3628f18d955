import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Every documented user mistake (docs/errors.md, `user` codes) through every command that can meet it
 * (issue 17, point 3): one line that says what and where, its code, a hint, exit 2; never a stack trace.
 * A command that does not read the faulty part may succeed; it may never crash.
 */
const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));

let dir: string;
let env: NodeJS.ProcessEnv;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Out> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env, cwd: dir, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

interface Mistake {
  name: string;
  /** Files to write, relative to the scratch folder; `$DIR` becomes its path. */
  files: Record<string, string>;
  /** The command line's tail (after the command). */
  args: string[];
  /** What the line must say, for the commands that must refuse it. */
  says: RegExp;
  /**
   * Commands that need not read the faulty part: they may succeed, or fail at run time (exit 1, `status`
   * with no agent running) in the same one-line form; never crash.
   */
  mayPass?: string[];
}

const ENGINE = '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n';
const COORD = '[coordinator]\nurl = "ws://127.0.0.1:9/provider/connect"\n';
const KEY = (name: string) => `[identity]\nkey_path = "$DIR/${name}"\n`;

const MISTAKES: Mistake[] = [
  {
    name: 'no config file at the path given',
    files: {},
    args: ['--config', '$DIR/missing.toml'],
    says: /missing\.toml.*\(USEPOD_CONFIG_NOT_FOUND\)$/,
  },
  {
    name: 'TOML syntax',
    files: { 'bad.toml': `${COORD}[limits\nmax_concurrent = 4\n` },
    args: ['--config', '$DIR/bad.toml', '--allow-insecure'],
    says: /bad\.toml:3:\d+.*\(USEPOD_CONFIG_PARSE\)$/,
  },
  {
    name: 'YAML syntax',
    files: { 'bad.yaml': 'coordinator:\n  url: "ws://127.0.0.1:9\nlimits: [\n' },
    args: ['--config', '$DIR/bad.yaml', '--allow-insecure'],
    says: /bad\.yaml:\d+:\d+.*\(USEPOD_CONFIG_PARSE\)$/,
  },
  {
    name: 'JSON syntax',
    files: { 'bad.json': '{\n  "limits": { "max_concurrent": 4, }\n}\n' },
    args: ['--config', '$DIR/bad.json'],
    says: /bad\.json:2:\d+.*\(USEPOD_CONFIG_PARSE\)$/,
  },
  {
    name: 'a wrong value',
    files: { 'value.toml': `${COORD}${KEY('v.key')}[limits]\nmax_concurrent = -3\n` },
    args: ['--config', '$DIR/value.toml', '--allow-insecure'],
    says: /max_concurrent.*\(USEPOD_CONFIG_INVALID\)$/,
  },
  {
    name: 'a ws:// coordinator without --allow-insecure',
    files: { 'ws.toml': `${COORD}${KEY('ws.key')}` },
    args: ['--config', '$DIR/ws.toml'],
    says: /--allow-insecure.*\(USEPOD_CONFIG_INVALID\)$/,
    // They never dial the coordinator.
    mayPass: ['backends', 'status', 'identity'],
  },
  {
    name: 'a backend kind no plugin provides',
    files: {
      'kind.toml': `${COORD}${KEY('k.key')}[[backends]]\nkind = "nosuchengine"\nurl = "http://127.0.0.1:9"\n`,
    },
    args: ['--config', '$DIR/kind.toml', '--allow-insecure'],
    says: /nosuchengine.*\(USEPOD_(PLUGIN_NOT_FOUND|CONFIG_INVALID)\)$/,
    // They read paths and addresses, not backends; `backends` reports the kind down, with why.
    mayPass: ['status', 'identity', 'backends'],
  },
  {
    name: 'a damaged identity file',
    files: { 'id.toml': `${COORD}${KEY('broken.key')}${ENGINE}`, 'broken.key': 'not a key\n' },
    args: ['--config', '$DIR/id.toml', '--allow-insecure'],
    says: /broken\.key.*\(USEPOD_IDENTITY_INVALID\)$/,
    mayPass: ['validate', 'backends', 'status'],
  },
  {
    name: 'an identity path that cannot be a file',
    files: { 'io.toml': `${COORD}[identity]\nkey_path = "/dev/null/identity.key"\n${ENGINE}` },
    args: ['--config', '$DIR/io.toml', '--allow-insecure'],
    says: /\/dev\/null\/identity\.key.*\(USEPOD_IDENTITY_IO\)$/,
    // A dry run creates no key; the real install (and run) would refuse here.
    mayPass: ['validate', 'backends', 'status', 'service install'],
  },
  {
    name: 'an unknown flag',
    files: {},
    args: ['--no-such-flag'],
    says: /--no-such-flag/,
  },
  {
    name: 'a value a flag does not take',
    files: {},
    args: ['--log-format', 'xml'],
    says: /log-format|xml/,
    mayPass: [],
  },
];

/** The commands that read the config (and so meet its mistakes), with what makes them not wait. */
const COMMANDS: { name: string; args: string[] }[] = [
  { name: 'run', args: ['run'] },
  { name: 'validate', args: ['validate'] },
  { name: 'backends', args: ['backends', '--no-detect'] },
  { name: 'status', args: ['status'] },
  { name: 'identity', args: ['identity'] },
  { name: 'service install', args: ['service', 'install', '--dry-run'] },
];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-mistakes-'));
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_DATA_HOME: join(dir, 'data'),
  };
  for (const m of MISTAKES) {
    for (const [name, text] of Object.entries(m.files))
      await writeFile(join(dir, name), text.replaceAll('$DIR', dir));
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs at most `n` at a time: each is a process start, and the machine has two cores. */
async function pool<T, R>(items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]!);
      }
    }),
  );
  return out;
}

describe('each documented mistake through each command (issue 17)', () => {
  it('is one line with what and where, its code and a hint, exit 2, and never a stack trace', async () => {
    const cases = COMMANDS.flatMap((c) => MISTAKES.map((m) => ({ c, m })));
    const results = await pool(cases, 3, async ({ c, m }) => ({
      c,
      m,
      out: await cli([...c.args, ...m.args.map((a) => a.replaceAll('$DIR', dir))]),
    }));
    const failures: string[] = [];
    for (const { c, m, out } of results) {
      const label = `${c.name} / ${m.name}: exit ${out.code}\n${out.stderr}`;
      if (/\n\s+at |Error: |TypeError|node:internal/.test(out.stderr)) failures.push(`stack trace: ${label}`);
      const lines = out.stderr.trimEnd().split('\n');
      const first = lines.findIndex(
        (l) => l.startsWith('usepod-agent: ') && !l.startsWith('usepod-agent: warning'),
      );
      if (m.mayPass?.includes(c.name) && out.code === 0) continue;
      if (m.mayPass?.includes(c.name) && out.code === 1) {
        if (first < 0 || lines.length - first > 2) failures.push(`not one line: ${label}`);
        continue;
      }
      if (out.code !== 2) failures.push(`not exit 2: ${label}`);
      else if (first < 0 || !m.says.test(lines[first]!))
        failures.push(`line does not say ${m.says}: ${label}`);
      else if (lines.length - first > 2) failures.push(`more than a line and a hint: ${label}`);
    }
    expect(failures.join('\n\n')).toBe('');
  }, 180_000);
});
