import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `setup` against a hostile coordinator (PROTOCOL.md 9): a real HTTP server on 127.0.0.1 answering the
 * pairing with values no coordinator should send, and the real CLI in a child process.
 */
const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
let dir: string;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function setup(base: string, name: string, extra: string[] = []): Promise<Out> {
  const args = ['setup', '--coordinator', base, '--config', join(dir, name, 'agent.toml')];
  args.push('--identity', join(dir, name, 'identity.key'), '--no-detect', '--poll-interval', '20', ...extra);
  const env = { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg') };
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, cwd: dir, timeout: 15_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A server on 127.0.0.1 answering each request with `answer`; every request it got is kept. */
async function serve(
  answer: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<{ url: string; got: string[]; server: Server }> {
  const got: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString('utf8');
    });
    req.on('end', () => {
      got.push(`${req.method} ${req.url} ${body}`);
      answer(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got, server };
}

const json = (res: ServerResponse, value: unknown) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
};
const ISSUED = { pair_code: 'ABCD-EFGH', poll_token: 'poll_tok_8d1e5f', expires_at: '2099-01-01T00:00:00Z' };
const ACTIVE = { status: 'active', host_token: 'host_tok_77aa31', provider_id: 'prov_7', model_config: [] };
const ESC = '\x1b]0;owned\x07\x1b[2J\x1b[31m';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'usepod-pair-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('setup against a hostile coordinator', () => {
  it('an answer with the wrong types, sizes or characters is one line naming the field, never its value; nothing is written', async () => {
    const cases: { issue?: unknown; poll?: unknown; line: string }[] = [
      { issue: { ...ISSUED, pair_code: `${ESC}ABCD` }, line: 'issue answered a wrong "pair_code"' },
      { issue: { ...ISSUED, pair_code: 'A'.repeat(500_000) }, line: 'issue answered a wrong "pair_code"' },
      { issue: { ...ISSUED, poll_token: 42 }, line: 'issue answered a wrong "poll_token"' },
      { poll: { status: `${ESC}active` }, line: 'poll answered a wrong "status"' },
      { poll: null, line: 'poll answered no JSON object' },
      { poll: { ...ACTIVE, provider_id: 'p'.repeat(100_000) }, line: 'poll answered a wrong "provider_id"' },
      { poll: { ...ACTIVE, provider_id: `../../x${ESC}` }, line: 'poll answered a wrong "provider_id"' },
      { poll: { ...ACTIVE, provider_id: 7 }, line: 'poll answered a wrong "provider_id"' },
      { poll: { ...ACTIVE, model_config: 'all' }, line: 'poll answered a wrong "model_config"' },
      {
        poll: { ...ACTIVE, model_config: [{ model_id: `m${ESC}`, input_per_1m: 1, output_per_1m: 1 }] },
        line: 'poll answered a wrong "model_config[0].model_id"',
      },
      {
        poll: { ...ACTIVE, model_config: [{ model_id: 'm', input_per_1m: '1', output_per_1m: -1 }] },
        line: 'poll answered a wrong "model_config[0].input_per_1m"',
      },
    ];
    for (const [i, c] of cases.entries()) {
      const coordinator = await serve((req, _body, res) =>
        json(res, req.url === '/v1/host/pair/issue' ? (c.issue ?? ISSUED) : c.poll),
      );
      try {
        const out = await setup(coordinator.url, `h${i}`);
        // Before: a raw escape in the box, a TypeError ("o.modelConfig is not iterable"), or exit 0
        // with a 100 KB provider id in the identity file, which the next start refused as too big.
        expect(out.code, JSON.stringify(c).slice(0, 120)).toBe(2);
        const first = out.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('usepod-agent:'));
        expect(first).toHaveLength(1);
        expect(first[0]).toContain(`/v1/host/pair/${c.line}`);
        expect(first[0]).toMatch(
          /does not pair as the Use Pod coordinator does; check --coordinator \(USEPOD_PAIRING_FAILED\)$/,
        );
        expect(first[0]!.length).toBeLessThan(300);
        expect(out.stdout + out.stderr).not.toContain('\x1b');
        const key = await readFile(join(dir, `h${i}`, 'identity.key'), 'utf8');
        expect(key).not.toContain('provider_id');
        expect(existsSync(join(dir, `h${i}`, 'agent.toml'))).toBe(false);
      } finally {
        await new Promise((r) => coordinator.server.close(r));
      }
    }
  }, 90_000);

  it('says so before pairing when another user could replace the key it pairs', async () => {
    const coordinator = await serve((req, _body, res) =>
      json(res, req.url === '/v1/host/pair/issue' ? ISSUED : { status: 'expired' }),
    );
    const open = join(dir, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    try {
      const out = await setup(coordinator.url, 'open');
      expect(out.stderr).toContain(
        `warning: identity file ${join(open, 'identity.key')} is in a folder another user can change (${open}, owner ${process.getuid?.()}, mode 0777)`,
      );
    } finally {
      await new Promise((r) => coordinator.server.close(r));
    }
  });

  it('waits a bounded time for a coordinator that answers "pending" for good, whatever expires_at says', async () => {
    for (const expires_at of ['2099-01-01T00:00:00Z', 'soon', '']) {
      const c = await serve((req, _body, res) =>
        json(res, req.url === '/v1/host/pair/issue' ? { ...ISSUED, expires_at } : { status: 'pending' }),
      );
      try {
        const out = await setup(c.url, `pending-${expires_at || 'empty'}`, ['--wait-limit', '2']);
        expect(out.code).not.toBe(0);
        expect(out.stderr).toMatch(/the pairing code expired before it was entered/i);
        expect(out.stderr).not.toMatch(/\n\s+at /);
        expect(c.got.length).toBeGreaterThan(2);
      } finally {
        c.server.close();
      }
    }
  });

  it('does not follow a redirect: the poll token goes nowhere but the coordinator named', async () => {
    const elsewhere = await serve((_req, _body, res) => json(res, { status: 'pending' }));
    const coordinator = await serve((req, _body, res) => {
      if (req.url === '/v1/host/pair/issue') return json(res, ISSUED);
      res.writeHead(307, { location: `${elsewhere.url}/collect` });
      res.end();
    });
    try {
      const out = await setup(coordinator.url, 'redirect');
      expect(out.code).toBe(2);
      expect(out.stderr.split('\n').filter((l) => l.startsWith('usepod-agent:'))).toEqual([
        `usepod-agent: /v1/host/pair/poll answered HTTP 307, a redirect, which pairing does not follow: pass the coordinator's own address to --coordinator (USEPOD_PAIRING_FAILED)`,
      ]);
      // Before: fetch followed it, POSTing {"poll_token": ...} to the other server every 20 ms.
      expect(elsewhere.got).toEqual([]);
      expect(coordinator.got.some((g) => g.includes(ISSUED.poll_token))).toBe(true);
    } finally {
      await new Promise((r) => coordinator.server.close(r));
      await new Promise((r) => elsewhere.server.close(r));
    }
  });
});
