/**
 * Lane V: ours side by side with the Rust agent 0.3.3 it replaces. Both agents run as operators run
 * them (ours: `usepod-agent run` with its ledger and status server; 0.3.3: its binary's `run`), from
 * one agent.toml each, against the same engine process and a coordinator each of the same code, and
 * take turns in one run: per round, time to first byte at one stream (paired rounds against the direct
 * path, the two agents interleaved pair by pair), then 64, 200 and 1,024 offered streams (one direct
 * step and each agent's step, their order swapped every round), then 256 streams for peak memory. CPU
 * and memory come from /proc for both processes alike. The figures are upper medians over the rounds.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeFlagsOf } from '@usepod-agent/plugin-update';
import { pct, StreamConsumer } from './consumer.js';
import { BenchCoordinator } from './coordinator.js';

const DEFAULT_RUST = '/root/.cache/usepod-rust-agent/src/target/release/usepod-agent';
const CLI = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));
const NODE_FLAGS = nodeFlagsOf(fileURLToPath(new URL('../packages/cli', import.meta.url)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, d = 3) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : null);
/** Upper median, as in issue 30's figures: of four rounds, the third smallest. */
const upperMedian = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : Number.NaN;
};

/** The 0.3.3 binary: $USEPOD_RUST_AGENT, else the build script's cache path; undefined when neither exists. */
export function rustAgentPath(): { path: string | undefined; looked: string } {
  const looked = process.env.USEPOD_RUST_AGENT || DEFAULT_RUST;
  return { path: existsSync(looked) ? looked : undefined, looked };
}

export interface VersusContext {
  engineUrl: string;
  setRate(tokensPerSec: number): Promise<unknown>;
  /** The direct path: the same request straight to the engine. */
  direct(c: StreamConsumer, maxTokens: number): Promise<void>;
  quick: boolean;
  log(s: string): void;
}

const CLK_TCK = 100;

/** utime + stime of a `/proc` stat file, µs. */
function cpuOf(path: string): number {
  const stat = readFileSync(path, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of the file (utime, stime); f[0] is field 3.
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

/** One agent process, its coordinator, and what /proc says about it. */
class AgentProcess {
  readonly coord = new BenchCoordinator();
  #child!: ChildProcess;
  startedAt = 0;
  constructor(readonly name: 'ours' | 'rust') {}

  async start(bin: string, engineUrl: string): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), `usepod-versus-${this.name}-`));
    const url = await this.coord.listening();
    // One config both agents read: the 0.3.x file format ours keeps (docs/migrating.md).
    const toml = [
      '[coordinator]',
      `url = "${url}"`,
      '[identity]',
      `key_path = "${join(dir, 'identity.key')}"`,
      '[[backends]]',
      'kind = "vllm"',
      `url = "${engineUrl}"`,
      '[pricing]',
      'default_input_per_1m = 500000',
      'default_output_per_1m = 750000',
      '[limits]',
      'max_concurrent = 256',
      '[observability]',
      // Ours serves /status and /metrics here (on by default); 0.3.3 reads the key and serves nothing.
      'prometheus_addr = "127.0.0.1:0"',
      'log_level = "info"',
      '',
    ].join('\n');
    const config = join(dir, 'agent.toml');
    writeFileSync(config, toml);
    const logFd = openSync(join(dir, 'agent.log'), 'a');
    // As the service and the launcher start it: the V8 flags the CLI's package.json asks for.
    const v8 =
      process.env.BENCH_V8 !== undefined ? process.env.BENCH_V8.split(' ').filter(Boolean) : NODE_FLAGS;
    const [cmd, args] =
      this.name === 'ours'
        ? [process.execPath, [...v8, CLI, 'run', '--config', config, '--allow-insecure']]
        : [bin, ['--config', config, '--allow-insecure', '--log-level', 'info', 'run']];
    // BENCH_VS_OURS_ENV="NAME=value ...": environment for ours alone (an allocator setting, say).
    const oursEnv =
      this.name === 'ours'
        ? Object.fromEntries(
            (process.env.BENCH_VS_OURS_ENV ?? '')
              .split(' ')
              .filter(Boolean)
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
          )
        : {};
    this.startedAt = performance.now();
    this.#child = spawn(cmd, args, {
      env: { ...process.env, ...oursEnv, HOME: dir, RUST_BACKTRACE: '0' },
      stdio: ['ignore', logFd, logFd],
    });
    process.on('exit', () => this.#child.kill('SIGKILL'));
    const exited = new Promise<never>((_, reject) =>
      this.#child.once('exit', (code) =>
        reject(new Error(`${this.name} agent exited (${code}) before going online; log: ${dir}/agent.log`)),
      ),
    );
    await Promise.race([this.coord.ready(), exited]);
  }

  /** Milliseconds from spawn to the capabilities frame. */
  get onlineMs(): number {
    return (this.coord.onlineAt ?? Number.NaN) - this.startedAt;
  }

  /**
   * Times each of its threads went to sleep (voluntary context switches: one per wake-up), by thread:
   * threads come and go (ours ends its ledger thread when idle), so windows are compared thread by thread.
   */
  sleepsByThread(): Map<string, number> {
    const out = new Map<string, number>();
    for (const t of readdirSync(`/proc/${this.#child.pid}/task`)) {
      try {
        const status = readFileSync(`/proc/${this.#child.pid}/task/${t}/status`, 'utf8');
        out.set(t, Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0));
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return out;
  }

  /** Wake-ups since `before` (`sleepsByThread()`), of the threads alive now. */
  wakeupsSince(before: Map<string, number>): number {
    let n = 0;
    for (const [t, count] of this.sleepsByThread()) n += count - (before.get(t) ?? 0);
    return n;
  }

  get pid(): number {
    return this.#child.pid!;
  }

  /** CPU of each thread, µs, by thread id (threads come and go; see `sleepsByThread`). */
  cpuByThread(): Map<string, number> {
    const out = new Map<string, number>();
    for (const t of readdirSync(`/proc/${this.#child.pid}/task`)) {
      try {
        out.set(t, cpuOf(`/proc/${this.#child.pid}/task/${t}/stat`));
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return out;
  }

  /** User + system CPU of the whole process (all threads), µs. */
  cpuUs(): number {
    return cpuOf(`/proc/${this.#child.pid}/stat`);
  }

  /**
   * The same for the main thread alone: the rest is V8's helper threads (concurrent marking, parallel
   * scavenges, compilation), libuv's pool and, in ours, the ledger's thread (decision 0008, third pass).
   */
  mainThreadCpuUs(): number {
    return cpuOf(`/proc/${this.#child.pid}/task/${this.#child.pid}/stat`);
  }

  rssKb(): number {
    const status = readFileSync(`/proc/${this.#child.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
  }

  async stop(): Promise<void> {
    const gone = new Promise((r) => this.#child.once('exit', r));
    this.#child.kill('SIGTERM');
    const t = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
    await this.coord.close();
  }
}

interface Step {
  events: number;
  latP50: number;
  latP99: number;
  cpuUs?: number;
  mainCpuUs?: number;
  peakRssKb?: number;
}

/** `streams` x 100 tok/s (beyond 256, 256 streams at a higher rate, as lane B), through one path. */
async function step(
  ctx: VersusContext,
  agent: AgentProcess | undefined,
  virtual: number,
  seconds: number,
  sampleRss = false,
): Promise<Step> {
  const streams = Math.min(virtual, 256);
  const rate = (100 * virtual) / streams;
  await ctx.setRate(rate);
  const maxTokens = Math.round(rate * seconds);
  const lat: number[] = [];
  const consumers = Array.from({ length: streams }, () => new StreamConsumer(lat));
  const cpu0 = agent?.cpuUs();
  const main0 = agent?.mainThreadCpuUs();
  const threads0 = process.env.BENCH_VS_THREADS ? agent?.cpuByThread() : undefined;
  let peak = 0;
  let sampling = sampleRss && agent !== undefined;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, agent!.rssKb());
      await sleep(50);
    }
  })();
  await Promise.all(
    consumers.map((c) =>
      agent ? agent.coord.dispatch(randomUUID(), c, maxTokens) : ctx.direct(c, maxTokens),
    ),
  );
  sampling = false;
  await sampler;
  const events = consumers.reduce((n, c) => n + c.chunks, 0);
  if (threads0 && agent) {
    // BENCH_VS_THREADS=1: which threads spent the CPU of this step (the main thread is the pid).
    const spent = [...agent.cpuByThread()]
      .map(
        ([t, us]) =>
          [t === String(agent.pid) ? 'main' : t, Math.round((us - (threads0.get(t) ?? 0)) / 1000)] as const,
      )
      .filter(([, ms]) => ms > 0)
      .sort((a, b) => b[1] - a[1]);
    console.error(
      `V ${agent.name} ${virtual} streams, CPU ms by thread: ${JSON.stringify(Object.fromEntries(spent))}`,
    );
  }
  return {
    events,
    latP50: pct(lat, 50),
    latP99: pct(lat, 99),
    ...(agent ? { cpuUs: agent.cpuUs() - cpu0!, mainCpuUs: agent.mainThreadCpuUs() - main0! } : {}),
    ...(sampleRss ? { peakRssKb: peak } : {}),
  };
}

/** The time to first byte of one short job, ms from dispatch. */
async function ttfb(ctx: VersusContext, agent: AgentProcess | undefined, tokens: number): Promise<number> {
  const c = new StreamConsumer([]);
  const t0 = performance.timeOrigin + performance.now();
  if (agent) await agent.coord.dispatch(randomUUID(), c, tokens);
  else await ctx.direct(c, tokens);
  return c.firstByteAt! - t0;
}

type Figures = Record<string, number>;

export interface VersusResult {
  binary: string;
  rounds: number;
  seconds_per_step: number;
  ours: Figures;
  rust: Figures;
  ratio: Record<string, number | null>;
  per_round: { ours: Figures[]; rust: Figures[] };
}

export const FIGURES: [key: string, label: string, unit: string][] = [
  ['cpu_us_per_event_64', 'agent CPU per event, 64 streams', 'µs'],
  ['cpu_us_per_event_200', 'agent CPU per event, 200 streams', 'µs'],
  ['added_ttfb_p50_ms', 'added time to first byte p50, 1 stream', 'ms'],
  ['added_ttfb_p99_ms', 'added time to first byte p99, 1 stream', 'ms'],
  ['added_delay_p50_64', 'added event delay p50, 64 streams', 'ms'],
  ['added_delay_p99_64', 'added event delay p99, 64 streams', 'ms'],
  ['added_delay_p50_200', 'added event delay p50, 200 streams', 'ms'],
  ['added_delay_p99_200', 'added event delay p99, 200 streams', 'ms'],
  ['added_delay_p50_1024', 'added event delay p50, 1,024 streams', 'ms'],
  ['added_delay_p99_1024', 'added event delay p99, 1,024 streams', 'ms'],
  ['cpu_us_per_event_64_cold', 'agent CPU per event, 64 streams, first load step (cold)', 'µs'],
  ['rss_idle_mb', 'resident memory idle (1 s after online, before any job)', 'MB'],
  ['rss_idle_after_mb', 'resident memory idle after the rounds (5 s)', 'MB'],
  ['rss_idle_settled_mb', 'resident memory idle after the rounds (70 s)', 'MB'],
  ['idle_wakeups_per_s', 'idle: wake-ups per second, all threads (40-70 s after the rounds)', '/s'],
  ['idle_cpu_ms_per_min', 'idle: CPU per minute (40-70 s after the rounds)', 'ms'],
  ['rss_peak_256_mb', 'resident memory peak, 256 streams', 'MB'],
  ['online_ms', 'start to online (capabilities sent)', 'ms'],
];

export async function laneV(ctx: VersusContext, binary: string): Promise<VersusResult> {
  const rounds = Number(process.env.BENCH_VS_ROUNDS ?? (ctx.quick ? 2 : 4));
  const seconds = Number(process.env.BENCH_VS_SECONDS ?? 4);
  const pairs = Number(process.env.BENCH_VS_PAIRS ?? (ctx.quick ? 200 : 400));
  // BENCH_VS_LEVELS=64,200 and BENCH_VS_PAIRS=0: a shorter run for comparing two builds by their ratios.
  const levels = process.env.BENCH_VS_LEVELS
    ? process.env.BENCH_VS_LEVELS.split(',').map(Number)
    : [64, 200, 1024];
  const agents = { ours: new AgentProcess('ours'), rust: new AgentProcess('rust') };
  const perRound: Record<'ours' | 'rust', Figures[]> = { ours: [], rust: [] };
  // A checkout remakes the CLI's oclif manifest on its first command after a build (bin/run.js, ~0.5 s),
  // which an installed package never does: done here, before start-up is timed (decision 0008, tenth pass).
  execFileSync(process.execPath, [CLI, 'version'], { stdio: 'ignore' });
  // Started one after the other on an idle machine: start-up is measured too.
  const idle: Record<string, number> = {};
  for (const a of [agents.ours, agents.rust]) {
    await a.start(binary, ctx.engineUrl);
    await sleep(1000);
    idle[a.name] = a.rssKb();
    ctx.log(
      `V ${a.name} online in ${Math.round(a.onlineMs)} ms, ${round(idle[a.name]! / 1024, 1)} MB resident`,
    );
  }
  // The first sustained load an agent sees is also where V8 compiles its per-event path (ours: 12% of
  // its CPU off the main thread in that step, 6% after): one 64-stream step each, kept out of the
  // rounds and reported on its own row, so the rounds compare agents that have served, as operators'
  // agents have (decision 0008, fourth pass).
  const cold: Record<string, number> = {};
  try {
    for (const a of [agents.ours, agents.rust]) {
      const s = await step(ctx, a, 64, seconds);
      cold[a.name] = s.cpuUs! / Math.max(1, s.events);
    }
    ctx.log(
      `V first load step (cold), CPU per event at 64 streams ${JSON.stringify(cold, (_, v) => (typeof v === 'number' ? round(v) : v))}`,
    );
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [agents.ours, agents.rust] : [agents.rust, agents.ours];
      const fig: Record<string, Figures> = { ours: {}, rust: {} };
      // Warm both agents and the direct path (V8 optimises per-job code after a few thousand jobs;
      // decision 0004), then interleave paired rounds: direct then agent, the agents taking turns.
      await ctx.setRate(200);
      for (let i = 0; pairs > 0 && i < (ctx.quick ? 60 : 120); i++) {
        for (const a of [undefined, ...order])
          await Promise.all(Array.from({ length: 16 }, () => ttfb(ctx, a, 1)));
      }
      const added: Record<string, number[]> = { ours: [], rust: [] };
      for (let i = 0; i < pairs; i++) {
        for (const a of i % 2 === 0 ? order : [...order].reverse()) {
          const d = await ttfb(ctx, undefined, 5);
          added[a.name]!.push((await ttfb(ctx, a, 5)) - d);
        }
      }
      for (const a of pairs > 0 ? order : []) {
        fig[a.name]!.added_ttfb_p50_ms = pct(added[a.name]!, 50);
        fig[a.name]!.added_ttfb_p99_ms = pct(added[a.name]!, 99);
      }
      for (const v of levels) {
        const d = await step(ctx, undefined, v, seconds);
        for (const a of order) {
          const s = await step(ctx, a, v, seconds);
          if (v !== 1024) {
            fig[a.name]![`cpu_us_per_event_${v}`] = s.cpuUs! / Math.max(1, s.events);
            // Logged per round, not in the table: the share of the CPU spent off the main thread.
            fig[a.name]![`helper_cpu_share_${v}`] = 1 - s.mainCpuUs! / Math.max(1, s.cpuUs!);
          }
          fig[a.name]![`added_delay_p50_${v}`] = s.latP50 - d.latP50;
          fig[a.name]![`added_delay_p99_${v}`] = s.latP99 - d.latP99;
        }
      }
      for (const a of order) {
        const s = await step(ctx, a, 256, seconds, true);
        fig[a.name]!.rss_peak_256_mb = s.peakRssKb! / 1024;
      }
      for (const a of order) {
        fig[a.name]!.rss_idle_mb = idle[a.name]! / 1024;
        fig[a.name]!.cpu_us_per_event_64_cold = cold[a.name]!;
        fig[a.name]!.online_ms = a.onlineMs;
        perRound[a.name].push(fig[a.name]!);
      }
      ctx.log(
        `V round ${r + 1}/${rounds} ${JSON.stringify(fig, (_, v) => (typeof v === 'number' ? round(v) : v))}`,
      );
    }
    // Idle again after serving: what an operator's agent holds between bursts of jobs.
    await sleep(5000);
    for (const a of [agents.ours, agents.rust])
      for (const f of perRound[a.name]) f.rss_idle_after_mb = a.rssKb() / 1024;
    // And settled: V8's memory reducer has run (it starts 8 s after activity ends) and features that
    // work only while there are jobs have stopped (the ledger's thread, 30 s after the last job). Then,
    // what idling costs: an operator's machine is also theirs.
    await sleep(35_000);
    const idle0 = Object.fromEntries(
      [agents.ours, agents.rust].map((a) => [a.name, { sleeps: a.sleepsByThread(), cpu: a.cpuUs() }]),
    );
    await sleep(30_000);
    for (const a of [agents.ours, agents.rust]) {
      const before = idle0[a.name]!;
      const wakeups = a.wakeupsSince(before.sleeps) / 30;
      const cpu = (a.cpuUs() - before.cpu) / 1000 / 0.5;
      ctx.log(`V ${a.name} settled: ${a.sleepsByThread().size} threads, ${round(a.rssKb() / 1024, 1)} MB`);
      for (const f of perRound[a.name])
        Object.assign(f, {
          idle_wakeups_per_s: wakeups,
          idle_cpu_ms_per_min: cpu,
          rss_idle_settled_mb: a.rssKb() / 1024,
        });
    }
  } finally {
    await agents.ours.stop();
    await agents.rust.stop();
  }
  const med = (who: 'ours' | 'rust') =>
    Object.fromEntries(FIGURES.map(([k]) => [k, round(upperMedian(perRound[who].map((f) => f[k]!)))!]));
  const ours = med('ours');
  const rust = med('rust');
  // A ratio of two added times is meaningless where 0.3.3 adds nothing or less than nothing.
  const ratio = Object.fromEntries(
    FIGURES.map(([k]) => [
      k,
      rust[k]! > 0 && Number.isFinite(ours[k]!) ? round(ours[k]! / rust[k]!, 2) : null,
    ]),
  );
  const r = { binary, rounds, seconds_per_step: seconds, ours, rust, ratio, per_round: perRound };
  ctx.log(`V ${JSON.stringify({ ours, rust, ratio })}`);
  return r;
}

const fmt = (n: number | null | undefined) =>
  n === null || n === undefined
    ? '-'
    : Math.abs(n) >= 100
      ? n.toFixed(0)
      : Math.abs(n) >= 10
        ? n.toFixed(1)
        : n.toFixed(2);

/** The side-by-side table, markdown. */
export function versusMarkdown(v: VersusResult | string): string {
  if (typeof v === 'string') return v;
  return [
    `Side by side with the Rust agent 0.3.3 (same engine, coordinator code and direct baseline; ${v.rounds} alternating rounds, ${v.seconds_per_step} s per load step; upper medians):`,
    '',
    '| figure | ours | 0.3.3 | ours / 0.3.3 |',
    '| --- | --- | --- | --- |',
    ...FIGURES.map(
      ([k, label, unit]) =>
        `| ${label} | ${fmt(v.ours[k])} ${unit} | ${fmt(v.rust[k])} ${unit} | ${fmt(v.ratio[k])} |`,
    ),
  ].join('\n');
}
