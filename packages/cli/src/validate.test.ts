import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `validate` is `run` without connecting (issue 27, point 7): the same plugin loading, the same checks,
 * the same `backends[i]` and file in every message, and `doctor` and `backends` say a mistake as they do.
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

/** A config whose first entry is right and whose second has an option its kind does not take. */
const head = (d: string) =>
  `[coordinator]\nurl = "ws://127.0.0.1:9/provider/connect"\n[identity]\nkey_path = "${d}/identity.key"\n`;
const TWO_BACKENDS = `[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n\n[[backends]]\nkind = "llamacpp"\nurl = "http://127.0.0.1:8"\noptions = { bogus = 1 }\n`;

/** No stack trace, whatever the command. */
const noStack = (o: Out) => expect(o.stderr).not.toMatch(/^\s+at /m);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-validate-'));
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_DATA_HOME: join(dir, 'data'),
    XDG_CONFIG_HOME: join(dir, 'cfg'),
    XDG_CACHE_HOME: join(dir, 'cache'),
    OCLIF_DISABLE_LINKED_ESM_WARNING: '1',
  };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('an option the kind does not take, on the second backend', () => {
  let file: string;
  const where = () =>
    new RegExp(
      `^(usepod-agent: )?${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:12:1: backends\\[1\\]\\.options: Unrecognized key: "bogus"`,
    );

  beforeAll(async () => {
    file = join(dir, 'agent.toml');
    // Line 12 is `options = { bogus = 1 }`.
    await writeFile(file, head(dir) + TWO_BACKENDS);
  });

  it('validate refuses it in one line at backends[1], file:line:column, exit 2', async () => {
    const out = await cli(['validate', '--config', file, '--allow-insecure']);
    expect(out.code).toBe(2);
    const [line] = out.stderr.split('\n');
    expect(line).toMatch(where());
    expect(line).toMatch(/\(USEPOD_CONFIG_INVALID\)$/);
    expect(out.stderr).not.toContain('backends[0]');
    expect(out.stdout).toBe('');
    noStack(out);
  });

  it('backends says the same line, not backends[0] without the file', async () => {
    const out = await cli(['backends', '--no-detect', '--config', file, '--allow-insecure']);
    expect(out.code).toBe(2);
    expect(out.stderr.split('\n')[0]).toMatch(where());
    expect(out.stderr).not.toContain('backends[0]');
    noStack(out);
  });

  it('doctor fails on it once, with the same words', async () => {
    const out = await cli(['doctor', '--json', '--config', file, '--allow-insecure']);
    expect(out.code).toBe(1);
    const { checks } = JSON.parse(out.stdout) as {
      checks: { name: string; level: string; detail: string }[];
    };
    const mentions = checks.filter((c) => c.detail.includes('bogus'));
    expect(mentions).toHaveLength(1);
    expect(mentions[0]!.level).toBe('fail');
    expect(mentions[0]!.detail).toMatch(where());
    expect(JSON.stringify(checks)).not.toContain('backends[0]');
  });
});

describe('a section no installed plugin claims', () => {
  it('validate and run name the package to install, at file:line:column, in one line', async () => {
    const file = join(dir, 'bogus.toml');
    // `[bogus]` is on line 5.
    await writeFile(file, `${head(dir)}[bogus]\nwhatever = 1\n`);
    for (const command of ['validate', 'run']) {
      const out = await cli([command, '--config', file, '--allow-insecure']);
      expect(out.code, command).toBe(2);
      const lines = out.stderr.trimEnd().split('\n');
      expect(lines[0], command).toMatch(
        /bogus\.toml:5:1: \[bogus\] is not claimed by any installed plugin; install usepod-agent-plugin-bogus \(`usepod-agent plugins install usepod-agent-plugin-bogus`\), or remove the section \(USEPOD_PLUGIN_NOT_FOUND\)$/,
      );
      expect(
        lines.slice(1).every((l) => /^ {2}hint: /.test(l)),
        command,
      ).toBe(true);
      noStack(out);
    }
  });
});

describe('a linked plugin rebuilt for another core', () => {
  it('is refused by validate and by run in one line, exit 2', async () => {
    const pkg = join(dir, 'future');
    await mkdir(pkg);
    await writeFile(
      join(pkg, 'package.json'),
      JSON.stringify({
        name: 'usepod-agent-plugin-future',
        version: '1.0.0',
        type: 'module',
        exports: { '.': './index.js', './package.json': './package.json' },
        oclif: {},
      }),
    );
    const plugin = (over: string) =>
      writeFile(
        join(pkg, 'index.js'),
        `export default { name: 'usepod-agent-plugin-future', apiVersion: 1, ${over} apply() {} };\n`,
      );
    // Linked while it was built for this core...
    await plugin('');
    const linked = await cli(['plugins', 'link', pkg, '--no-install']);
    expect(linked.code, linked.stderr).toBe(0);
    // ...then rebuilt by its author for a core that does not exist yet: a link follows the folder.
    await plugin("apiVersion: 100, core: '^99.0.0',");
    const file = join(dir, 'plain.toml');
    await writeFile(file, `${head(dir)}[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n`);
    for (const command of ['validate', 'run']) {
      const out = await cli([command, '--config', file, '--allow-insecure']);
      expect(out.code, command).toBe(2);
      const [line, ...rest] = out.stderr.trimEnd().split('\n');
      expect(line, command).toMatch(
        /^usepod-agent: plugin "usepod-agent-plugin-future" \(usepod-agent-plugin-future\) was built for plugin API 100, core \^99\.0\.0; this agent is @usepod-agent\/core 0\.4\.0 with plugin API 1.*\(USEPOD_PLUGIN_API_MISMATCH\)$/,
      );
      expect(
        rest.every((l) => /^ {2}hint: /.test(l)),
        command,
      ).toBe(true);
      expect(out.stdout, command).not.toMatch(/^ok/m);
      noStack(out);
    }
  });
});
