/**
 * `node --import tsx bench/idle-memory.ts [node flags for the agent]`: what `usepod-agent run` holds
 * when online and idle (ledger and status server on, as an operator runs it), by where it lives
 * (/proc/<pid>/smaps: the node binary's pages, anonymous memory, malloc, native modules), by V8 space,
 * and by package of the modules it loaded; with how long it took from start to online. Decision 0008.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchCoordinator } from './coordinator.js';
import { BatchEngine } from './engine.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
const waitMs = Number(process.env.IDLE_WAIT_MS ?? 5000);
// A status server path asked once online (IDLE_GET=/api/earnings: what a dashboard page open costs).
const ask = process.env.IDLE_GET;
const freePort = async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
};
const statusPort = ask ? await freePort() : 0;
// Node flags for the agent; a `--` before them (as npm scripts pass arguments on) is not one: node took
// it as the end of its options and the agent never started.
const flags = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));

const engine = new BatchEngine();
const engineUrl = await engine.start();
const coord = new BenchCoordinator();
const dir = mkdtempSync(join(tmpdir(), 'usepod-idle-'));
writeFileSync(
  join(dir, 'agent.toml'),
  [
    '[coordinator]',
    `url = "${await coord.listening()}"`,
    '[identity]',
    `key_path = "${join(dir, 'identity.key')}"`,
    '[[backends]]',
    'kind = "vllm"',
    `url = "${engineUrl}"`,
    '[observability]',
    `prometheus_addr = "127.0.0.1:${statusPort}"`,
    // More of agent.toml (IDLE_TOML="[ledger]\npath = \"off\""), to see what one feature costs.
    process.env.IDLE_TOML ?? '',
    '',
  ].join('\n'),
);
// IDLE_CLI: another checkout's bin/run.js (a baseline build, for alternating runs).
const cli = process.env.IDLE_CLI ?? here('../packages/cli/bin/run.js');
// A checkout remakes the CLI's oclif manifest on its first command after a build (~0.5 s), which an
// installed package never does: done before start-up is timed.
execFileSync(process.execPath, [cli, 'version'], { stdio: 'ignore' });
const started = performance.now();
const child = spawn(
  process.execPath,
  [
    ...flags,
    '--import',
    here('./idle-hooks.mjs'),
    cli,
    'run',
    '--config',
    join(dir, 'agent.toml'),
    '--allow-insecure',
  ],
  // From its own folder, as a service runs it: plugins are also looked for in the cwd's node_modules, and
  // another checkout's packages there would be loaded beside the CLI's own (a second core).
  { cwd: dir, env: { ...process.env, HOME: dir, IDLE_OUT: join(dir, 'idle.json') }, stdio: 'ignore' },
);
// An agent that exits before it is online (a bad flag) is said, not waited for: its output is not kept.
await Promise.race([
  coord.ready(),
  new Promise((_, reject) =>
    child.once('exit', (code) =>
      reject(new Error(`the agent exited (${code}) before it was online: flags ${flags.join(' ')}`)),
    ),
  ),
]);
const onlineMs = Math.round(coord.onlineAt! - started);
let asked: number | undefined;
if (ask) {
  const token = readFileSync(join(dir, 'status.token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${statusPort}${ask}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  asked = res.status;
  await res.arrayBuffer();
}
await new Promise((r) => setTimeout(r, waitMs));

const resident = new Map<string, number>();
let mapping = '';
for (const line of readFileSync(`/proc/${child.pid}/smaps`, 'utf8').split('\n')) {
  const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
  if (head) mapping = head[1] || '[anon]';
  const rss = /^Rss:\s+(\d+) kB/.exec(line);
  if (rss) resident.set(mapping, (resident.get(mapping) ?? 0) + Number(rss[1]) * 1024);
}
// IDLE_SNAPSHOT=1 (with --heapsnapshot-signal=SIGUSR1 among the node flags): a heap snapshot in the cwd.
if (process.env.IDLE_SNAPSHOT) {
  child.kill('SIGUSR1');
  await new Promise((r) => setTimeout(r, 4000));
}
child.kill('SIGUSR2');
await new Promise((r) => setTimeout(r, 500));
const inside = JSON.parse(readFileSync(join(dir, 'idle.json'), 'utf8')) as {
  modules: number | null;
  byPackage: Record<string, number>;
  memory: NodeJS.MemoryUsage;
  spaces: Record<string, [number, number]>;
};
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
await coord.close();
await engine.close();

const total = [...resident.values()].reduce((a, b) => a + b, 0);
const report = {
  flags: flags.join(' ') || null,
  online_ms: onlineMs,
  ...(ask ? { asked: `${ask} ${asked}` } : {}),
  idle_after_ms: waitMs,
  rss_mb: mb(total),
  resident_mb: Object.fromEntries(
    [...resident]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, v]) => [k, mb(v)]),
  ),
  heap_total_mb: mb(inside.memory.heapTotal),
  heap_used_mb: mb(inside.memory.heapUsed),
  external_mb: mb(inside.memory.external),
  v8_spaces_used_committed_mb: Object.fromEntries(
    Object.entries(inside.spaces)
      .filter(([, [, committed]]) => committed > 0)
      .map(([k, [used, committed]]) => [k, `${mb(used)} / ${mb(committed)}`]),
  ),
  modules: inside.modules,
  ...(process.env.IDLE_LIST ? { files: (inside as { files?: string[] }).files } : {}),
  modules_by_package: Object.fromEntries(
    Object.entries(inside.byPackage)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15),
  ),
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(0);
