import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * Plugins as a hostile or broken package makes them, installed in a scratch home's plugin root (the
 * folders `plugins install` leaves), and the CLI run on them as an operator runs it: a real process each.
 */
const BIN = fileURLToPath(new URL('../../../bin/run.js', import.meta.url));

/**
 * Node's argument that makes the CLI's 30 s plugin bound (PLUGIN_LOAD_MS) last 500 ms (the line still says
 * 30 s): the bound itself is what is tested, not its length.
 */
const SHORT_BOUND = `data:text/javascript,${encodeURIComponent('const t = globalThis.setTimeout; globalThis.setTimeout = (f, ms, ...a) => t(f, ms === 30000 ? 500 : ms, ...a);')}`;

const homes: string[] = [];
afterEach(async () => {
  for (const h of homes.splice(0)) await rm(h, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  out: string;
  err: string;
}

/** `usepod-agent <args>` in `home`, killed at `limitMs` (code null: it was still running). */
function cli(home: string, args: string[], limitMs = 20_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', SHORT_BOUND, BIN, ...args], {
      cwd: home,
      env: {
        PATH: process.env.PATH,
        HOME: home,
        XDG_DATA_HOME: join(home, 'data'),
        XDG_CONFIG_HOME: join(home, 'cfg'),
        XDG_CACHE_HOME: join(home, 'cache'),
        npm_config_audit: 'false',
        npm_config_fund: 'false',
        npm_config_update_notifier: 'false',
        npm_config_cache: join(home, 'npm-cache'),
      },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/** A scratch home whose plugin root holds these packages as `plugins install` leaves them. */
async function homeWith(
  packages: Record<
    string,
    { source: string; pjson?: Record<string, unknown>; files?: Record<string, string> }
  >,
): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'usepod-hostile-plugins-'));
  homes.push(home);
  const root = join(home, 'data', 'usepod-agent');
  await mkdir(root, { recursive: true });
  for (const [name, p] of Object.entries(packages)) {
    const dir = join(root, 'node_modules', name);
    await mkdir(dir, { recursive: true });
    const pjson = { name, version: '1.0.0', type: 'module', main: 'index.js', oclif: {}, ...p.pjson };
    await writeFile(join(dir, 'package.json'), JSON.stringify(pjson));
    await writeFile(join(dir, 'index.js'), p.source);
    for (const [file, text] of Object.entries(p.files ?? {})) {
      await mkdir(join(dir, file, '..'), { recursive: true });
      await writeFile(join(dir, file), text);
    }
  }
  const names = Object.keys(packages);
  await writeFile(
    join(root, 'package.json'),
    JSON.stringify({
      name: 'usepod-agent',
      private: true,
      dependencies: Object.fromEntries(names.map((n) => [n, '1.0.0'])),
      oclif: { schema: 1, plugins: names.map((name) => ({ name, type: 'user', tag: 'latest' })) },
    }),
  );
  return home;
}

const plugin = (name: string, rest = "kinds: ['x'], apply() {}") =>
  `export default { name: '${name}', apiVersion: 1, ${rest} };\n`;

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
const ESCAPES = /[\u001b\u0007\u009b]/;

describe('plugins (the listing) over broken plugins', () => {
  it('a plugin throwing escapes and a megabyte at import is one folded, bounded row', async () => {
    const home = await homeWith({
      'usepod-agent-plugin-loud': {
        source: `throw new Error('\\x1b]0;owned\\x07\\x1b[2J' + 'A'.repeat(1 << 20) + '\\nsecond line');\n`,
      },
      'usepod-agent-plugin-odd': { source: plugin('usepod-agent-plugin-odd', 'kinds: 5, apply() {}') },
    });
    const r = await cli(home, ['plugins']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toMatch(ESCAPES);
    const loud = r.out.split('\n').find((l) => l.startsWith('usepod-agent-plugin-loud'));
    expect(loud).toMatch(/not usable: plugin "usepod-agent-plugin-loud" threw in its import: .*owned/);
    expect(loud!.length).toBeLessThan(500);
    expect(r.out).not.toMatch(/second line/);
    // A `kinds` that is no list crashed the whole listing ("is not iterable").
    expect(r.out).toMatch(/usepod-agent-plugin-odd .*not usable: .*its "kinds" and "sections" must be lists/);
  }, 30_000);

  it('a plugin whose import never settles is named after the bound: no silent exit 13, no hang', async () => {
    const home = await homeWith({
      'usepod-agent-plugin-stuck': { source: 'await new Promise(() => {});\n' },
      'usepod-agent-plugin-held': {
        source: 'await new Promise(() => setInterval(() => {}, 1000));\n',
      },
    });
    const r = await cli(home, ['plugins']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/usepod-agent-plugin-held .*did not finish its import within 30 s/);
    expect(r.out).toMatch(/usepod-agent-plugin-stuck .*did not finish its import within 30 s/);
  }, 30_000);

  it('a plugin that leaves a timer running at import does not keep the command from ending', async () => {
    const home = await homeWith({
      'usepod-agent-plugin-ticks': {
        source: `setInterval(() => {}, 1000);\n${plugin('usepod-agent-plugin-ticks')}`,
      },
    });
    const r = await cli(home, ['plugins'], 15_000);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/usepod-agent-plugin-ticks\s+1\.0\.0\s+kinds: x/);
  }, 30_000);
});

describe('validate over broken plugins', () => {
  const config = async (home: string, extra = '') => {
    const file = join(home, 'agent.toml');
    await writeFile(file, `[[backends]]\nkind = "x"\nurl = "http://127.0.0.1:9"\n${extra}`);
    return file;
  };

  it('an apply() that never resolves is one line naming the plugin, exit 2', async () => {
    const home = await homeWith({
      'usepod-agent-plugin-x': {
        source: plugin('usepod-agent-plugin-x', "kinds: ['x'], apply() { return new Promise(() => {}); }"),
      },
    });
    const r = await cli(home, ['validate', '--config', await config(home)]);
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe(
      'usepod-agent: plugin "usepod-agent-plugin-x" did not finish apply() within 30 s (USEPOD_PLUGIN_LOAD_FAILED)',
    );
  }, 30_000);

  it("a mistake quoting a plugin's own words reaches the terminal with no escape in it", async () => {
    // The plugin's schema answers with escapes: the config mistake quotes it, and it is printed as is.
    const schema =
      "{ '~standard': { version: 1, vendor: 'x', validate: () => ({ issues: [{ message: '\\x1b]0;owned\\x07\\x1b[31mbad' }] }) } }";
    const home = await homeWith({
      'usepod-agent-plugin-x': {
        source: plugin(
          'usepod-agent-plugin-x',
          `kinds: ['x'], sections: ['xs'], apply(_h, ctx) { ctx.section('xs', ${schema}); ctx.registerBackend('x', () => ({})); }`,
        ),
        pjson: { 'usepod-agent': { kinds: ['x'], sections: ['xs'] } },
      },
    });
    const r = await cli(home, ['validate', '--config', await config(home, '[xs]\na = 1\n')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/xs: +\]0;owned +\[31mbad/);
    expect(r.err).not.toMatch(ESCAPES);
  }, 30_000);

  it('two installed plugins registering one kind: the same one serves it at every start', async () => {
    // oclif lists plugins in the order they finished loading: one with commands to scan finishes later.
    const claim = (name: string) =>
      plugin(name, `kinds: ['x'], apply(_h, ctx) { ctx.registerBackend('x', () => ({})); }`);
    const home = await homeWith({
      'usepod-agent-plugin-a': {
        source: claim('usepod-agent-plugin-a'),
        pjson: { oclif: { commands: './commands' } },
        files: Object.fromEntries(
          [1, 2, 3, 4].map((i) => [`commands/c${i}.js`, `export default class C${i} { static run() {} }\n`]),
        ),
      },
      'usepod-agent-plugin-b': { source: claim('usepod-agent-plugin-b') },
    });
    const file = await config(home);
    for (let i = 0; i < 2; i++) {
      const r = await cli(home, ['validate', '--config', file]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/- x http:\/\/127\.0\.0\.1:9 +\[usepod-agent-plugin-a\]/);
    }
  }, 40_000);
});

describe('a plugin root another local user could change', () => {
  it('is refused in one line before any plugin runs: world-writable, or another user’s', async () => {
    // The plugin leaves a mark beside itself when its module runs.
    const home = await homeWith({
      'usepod-agent-plugin-x': {
        source: `import { writeFileSync } from 'node:fs';\nwriteFileSync(new URL('./ran', import.meta.url), 'x');\n${plugin('usepod-agent-plugin-x')}`,
      },
    });
    const root = join(home, 'data', 'usepod-agent');
    const cases: [string, () => Promise<void>, () => Promise<void>][] = [
      [
        join(root, 'node_modules'),
        () => chmod(join(root, 'node_modules'), 0o777),
        () => chmod(join(root, 'node_modules'), 0o755),
      ],
      [
        join(root, 'package.json'),
        () => chmod(join(root, 'package.json'), 0o666),
        () => chmod(join(root, 'package.json'), 0o644),
      ],
    ];
    // Root may give a file away: another user's plugin folder, as a shared machine has it.
    if (process.getuid?.() === 0) {
      const dir = join(root, 'node_modules', 'usepod-agent-plugin-x');
      cases.push([dir, () => chown(dir, 65534, 65534), () => chown(dir, 0, 0)]);
    }
    for (const [path, make, undo] of cases) {
      await make();
      const r = await cli(home, ['plugins']);
      expect(r.code, path).toBe(2);
      expect(r.err.split('\n')[0]).toMatch(
        new RegExp(
          `^usepod-agent: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (can be changed by other users|belongs to uid 65534).*\\(USEPOD_CONFIG_UNSAFE\\)$`,
        ),
      );
      await undo();
    }
    const ran = join(root, 'node_modules', 'usepod-agent-plugin-x', 'ran');
    await expect(stat(ran)).rejects.toThrow(/ENOENT/);
    // Writable by this user's own group only (a private group per user, umask 002): its own.
    await chmod(join(root, 'node_modules'), 0o775);
    await chown(join(root, 'node_modules'), process.getuid!(), process.getgid!());
    const r = await cli(home, ['plugins']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/usepod-agent-plugin-x\s+1\.0\.0\s+kinds: x/);
    expect((await stat(ran)).isFile()).toBe(true);
  }, 60_000);
});

describe('plugins install with an npm setting passed as a name', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  it('`-- --registry=URL` is refused in one line, and npm never asks that registry', async () => {
    const asked: string[] = [];
    server = createServer((req, res) => {
      asked.push(req.url ?? '');
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    // A plugin the list names but npm has not fetched: an `npm install` fetches it from the registry it is given.
    const home = await homeWith({});
    const pjson = join(home, 'data', 'usepod-agent', 'package.json');
    const root = JSON.parse(await readFile(pjson, 'utf8'));
    root.dependencies = { 'usepod-agent-plugin-zzz': '1.0.0' };
    await writeFile(pjson, JSON.stringify(root));
    const r = await cli(home, ['plugins', 'install', '--', `--registry=${registry}`], 60_000);
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe(
      `usepod-agent: --registry=${registry} is not a plugin: no package name starts with "-" (USEPOD_USAGE)`,
    );
    expect(asked).toEqual([]);
  }, 70_000);
});
