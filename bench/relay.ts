/**
 * `npm run bench [-- --quick]`: the relay benchmark. The same engine and the
 * same consumer code on two paths, engine -> consumer directly and engine ->
 * agent -> coordinator -> consumer, so every figure is what the agent adds.
 * The agent runs in its own process; the engine, the coordinator and the
 * consumers share the driver process (and its clock).
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent as Pool, request } from 'undici';
import { clock, pct, StreamConsumer } from './consumer.js';
import { BenchCoordinator } from './coordinator.js';
import { type Gc, recordGcs } from './gc-log.js';
import { laneV, rustAgentPath, type VersusResult, versusMarkdown } from './versus.js';

const quick = process.argv.includes('--quick');

// BENCH_TRACE=1 (with --lanes=A): every process records its socket and undici events on one clock, and
// lane A ends with where each path's time to first byte goes (trace-hooks.mjs, trace-report.ts).
const traceDir = process.env.BENCH_TRACE ? mkdtempSync(join(tmpdir(), 'usepod-bench-trace-')) : undefined;
const traceHooks = fileURLToPath(new URL('./trace-hooks.mjs', import.meta.url));
let saveTrace: (() => void) | undefined;
if (traceDir) {
  process.env.BENCH_TRACE_DIR = traceDir;
  saveTrace = ((await import(traceHooks)) as { save: () => void }).save;
}
const traced = (role: string) => ({
  execArgv: traceDir ? ['--import', traceHooks] : [],
  env: { ...process.env, BENCH_TRACE_ROLE: role },
});
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
// Interrupted, the child processes (engine, agents) go too: the exit handlers below run on process.exit.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
const log = (s: string) => process.stderr.write(`${s}\n`);
const round = (n: number, d = 2) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : null);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Usage {
  cpuUs: number;
  userUs: number;
  systemUs: number;
  /** read + write syscalls of the agent process (/proc/self/io syscr + syscw). */
  syscalls: number;
  voluntary: number;
  involuntary: number;
  heap: number;
  rss: number;
  external: number;
  outbound: number;
  inFlight: number;
}

class Worker {
  readonly #child: ChildProcess;
  #queue: ((v: unknown) => void)[] = [];
  constructor() {
    // BENCH_PROFILE=dir writes a CPU profile of the agent process there.
    const prof = process.env.BENCH_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
      : [];
    this.#child = fork(here('./agent-worker.mjs'), [], {
      execArgv: [
        '--expose-gc',
        ...prof,
        ...traced('agent').execArgv,
        ...(process.env.BENCH_V8 ? process.env.BENCH_V8.split(' ') : []),
      ],
      env: traced('agent').env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (m) => this.#queue.shift()?.(m));
    // Never leave the agent process behind, whatever ends this one.
    process.on('exit', () => this.#child.kill('SIGKILL'));
  }
  send(msg: Record<string, unknown>): void {
    this.#child.send(msg);
  }
  ask<T>(msg: Record<string, unknown>): Promise<T> {
    return new Promise((resolve) => {
      this.#queue.push(resolve as (v: unknown) => void);
      this.#child.send(msg);
    });
  }
}

interface EngineCounters {
  written: number;
  ceiling: number;
  active: number;
  pausedStreams: number;
}

/** The engine, in its own process (see engine-process.ts). */
class EngineProc {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, (c: EngineCounters) => void>();
  #next = 1;
  onAbort: ((at: number) => void) | undefined;
  url!: string;
  constructor() {
    this.#child = fork(here('./engine-process.ts'), ['100'], {
      execArgv: ['--import', 'tsx', ...traced('engine').execArgv],
      env: traced('engine').env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    process.on('exit', () => this.#child.kill('SIGKILL'));
  }
  async start(): Promise<string> {
    this.url = await new Promise<string>((resolve) => {
      this.#child.on(
        'message',
        (m: { url?: string; id?: number; event?: string; at?: number } & EngineCounters) => {
          if (m.url) resolve(m.url);
          else if (m.event === 'abort') this.onAbort?.(m.at!);
          else if (m.id) {
            this.#pending.get(m.id)?.(m);
            this.#pending.delete(m.id);
          }
        },
      );
    });
    return this.url;
  }
  #ask(msg: Record<string, unknown>): Promise<EngineCounters> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#child.send({ ...msg, id });
    });
  }
  setRate(v: number) {
    return this.#ask({ cmd: 'rate', v });
  }
  resetCounters() {
    return this.#ask({ cmd: 'reset' });
  }
  counters() {
    return this.#ask({ cmd: 'counters' });
  }
  async gcs(): Promise<Gc[]> {
    return ((await this.#ask({ cmd: 'gcs' })) as unknown as { gcs: Gc[] }).gcs;
  }
  close() {
    this.#child.kill();
  }
}

const engine = new EngineProc();
const engineUrl = await engine.start();
const coord = new BenchCoordinator();
const coordUrl = await coord.listening();
const worker = new Worker();
await worker.ask({ cmd: 'start', coordinator: coordUrl, engine: engineUrl });
await coord.ready();
const pool = new Pool({ connections: 4096, keepAliveTimeout: 60_000 });
log(
  `bench: engine ${engineUrl}, coordinator ${coordUrl}, agent in pid-separate worker${quick ? ' (quick)' : ''}`,
);

async function direct(
  c: StreamConsumer,
  maxTokens: number,
  content = 'bench',
  base = engineUrl,
): Promise<void> {
  const started = performance.now();
  const res = await request(`${base}/v1/chat/completions`, {
    dispatcher: pool,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench/model',
      messages: [{ role: 'user', content }],
      max_tokens: maxTokens,
      stream: true,
    }),
  });
  for await (const chunk of res.body) c.push(chunk as Buffer, clock());
  c.lastAt ??= started;
}

async function viaAgent(
  c: StreamConsumer,
  maxTokens: number,
  id = randomUUID(),
  content = 'bench',
): Promise<Record<string, unknown>> {
  return coord.dispatch(id, c, maxTokens, content);
}

type Path = 'direct' | 'agent';
const run = (path: Path, c: StreamConsumer, n: number, content?: string) =>
  path === 'direct' ? direct(c, n, content) : viaAgent(c, n, randomUUID(), content);

// The driver's own garbage collections, to tell them apart from the agent's in lane A's slow rounds.
const driverGcs = recordGcs();
const GC_KINDS: Record<number, string> = { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weak callbacks' };

// Marks each lane A round in the trace (BENCH_TRACE).
const trace = (globalThis as { __trace?: (label: string) => void }).__trace;

/** Steal time of all cores from /proc/stat, ms; undefined where there is no such file. */
function stealMs(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
    // Fields after "cpu": user nice system idle iowait irq softirq steal, in USER_HZ (100 per second).
    return Number(cpu[8]) * 10;
  } catch {
    return undefined;
  }
}

/**
 * One round of lane A: the same job on the direct path, then through the agent, back to back, each with
 * when it started, its first byte and the latencies of its chunks. Rounds given an index are marked in
 * the trace (BENCH_TRACE).
 */
async function pairedRound(tokens: number, index?: number, content?: string) {
  const one = async (path: Path) => {
    const lat: number[] = [];
    const c = new StreamConsumer(lat);
    const t0 = clock();
    if (index !== undefined) trace?.(`start ${path} ${index}`);
    await run(path, c, tokens, content);
    if (index !== undefined) trace?.(`first ${path} ${index} ${(c.firstByteAt! - t0).toFixed(3)}`);
    return { t0, first: c.firstByteAt!, lat };
  };
  const direct = await one('direct');
  return { direct, agent: await one('agent') };
}

/** What the agent added to the time to first byte in one paired round, ms. */
const added = ({ direct, agent }: Awaited<ReturnType<typeof pairedRound>>) =>
  agent.first - agent.t0 - (direct.first - direct.t0);

/** The added time of `n` unmarked paired rounds, in order. */
async function addedRounds(n: number, tokens: number, content?: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(added(await pairedRound(tokens, undefined, content)));
  return out;
}

// ---- A: overhead at one stream ----
async function laneA() {
  await engine.setRate(200);
  // Short jobs and many rounds: p99 of 100 rounds is the second slowest one, which on a shared 2-core
  // VM swings from 1.4 to 6 ms between runs; with 400 it is the fourth.
  const rounds = quick ? 400 : 1000;
  const tokens = 5;
  const warmup = 5;
  const out: Record<Path, { ttfb: number[]; lat: number[] }> = {
    direct: { ttfb: [], lat: [] },
    agent: { ttfb: [], lat: [] },
  };
  // The agent's first jobs after start: what it adds while V8 is still compiling its job handling
  // (and the driver and the engine theirs). Reported beside the targets, not as their figure.
  const early = await addedRounds(300, tokens);
  // Then both paths are warmed to the steady state of an agent that has been serving. V8 optimises a
  // function after enough calls, and most of a job's code runs once per job: after 300 sequential
  // jobs the agent's frame handling, ws's receiver and undici's request were still interpreted; they
  // were optimised by 2,000 (`BENCH_V8=--trace-opt`; decision 0004). Batches of 16 concurrent
  // one-token jobs get there in seconds; sequential pairs after them settle both paths into the
  // pattern measured.
  const batch = (path: Path) =>
    Promise.all(Array.from({ length: 16 }, () => run(path, new StreamConsumer([]), 1)));
  for (let i = 0; i < (quick ? 200 : 300); i++) {
    await batch('direct');
    await batch('agent');
  }
  for (let i = 0; i < 100; i++) {
    await run('direct', new StreamConsumer([]), 1);
    await run('agent', new StreamConsumer([]), 1);
  }
  const windows: [number, number][] = [];
  const paired: number[] = [];
  const stealBefore = stealMs();
  const startedAt = Date.now();
  for (let i = 0; i < warmup + rounds; i++) {
    const pair = await pairedRound(tokens, i);
    if (i < warmup) continue;
    windows.push([pair.agent.t0, pair.agent.first]);
    paired.push(added(pair));
    for (const path of ['direct', 'agent'] as const) {
      out[path].ttfb.push(pair[path].first - pair[path].t0);
      out[path].lat.push(...pair[path].lat);
    }
  }
  const stealAfter = stealMs();
  const steal = stealAfter === undefined || stealBefore === undefined ? undefined : stealAfter - stealBefore;
  const laneMs = Date.now() - startedAt;
  const pings: number[] = [];
  // Which of the slowest rounds had a garbage collection of the agent or of the driver inside them.
  const { gcs } = await worker.ask<{ gcs: Gc[] }>({ cmd: 'gcs' });
  const engineGcs = await engine.gcs();
  // The collections inside a round, as "minor 0.6 ms", or false.
  const hit = (list: Gc[], [from, to]: [number, number]) => {
    const inside = list.filter(([at, ms]) => at < to && at + ms > from);
    return inside.length === 0
      ? false
      : inside.map(([, ms, kind]) => `${GC_KINDS[kind ?? 0] ?? 'gc'} ${round(ms, 2)} ms`).join(', ');
  };
  const slowest = paired
    .map((added, i) => ({ added, i }))
    .sort((x, y) => y.added - x.added)
    .slice(0, Math.max(3, Math.ceil(rounds / 50)));
  const slow_rounds = slowest.map(({ added, i }) => ({
    added_ms: round(added, 3),
    agent_gc: hit(gcs, windows[i]!),
    driver_gc: hit(driverGcs, windows[i]!),
    engine_gc: hit(engineGcs, windows[i]!),
  }));
  for (let i = 0; i < 50; i++) pings.push(await coord.pingRtt());
  // Real prompts are larger than lane A's: the agent parses the job frame and writes the request out
  // again, so the added time grows with the prompt (the engine parses it on both paths alike).
  const promptAdded = async (kb: number) => {
    const content = 'lorem ipsum dolor sit amet, '.repeat(Math.ceil((kb * 1024) / 28)).slice(0, kb * 1024);
    // The first five rounds with the larger prompt settle both paths and are not counted.
    const rounds = (await addedRounds(105, tokens, content)).slice(5);
    return { p50: round(pct(rounds, 50), 3), p99: round(pct(rounds, 99), 3) };
  };
  const kb16 = await promptAdded(16);
  const kb100 = quick ? undefined : await promptAdded(100);
  const r = {
    rounds,
    // What one trip to the agent process and back costs here, with no agent code on the way.
    ws_ping_rtt_p50_ms: round(pct(pings, 50), 3),
    ttfb_direct_p50_ms: round(pct(out.direct.ttfb, 50), 3),
    ttfb_agent_p50_ms: round(pct(out.agent.ttfb, 50), 3),
    // Paired: each round runs both paths back to back, so the difference is taken round by round.
    added_ttfb_p50_ms: round(pct(paired, 50), 3),
    added_ttfb_p99_ms: round(pct(paired, 99), 3),
    // The same over the first 300 jobs after the agent started, before V8 had optimised it.
    early_added_ttfb_p50_ms: round(pct(early, 50), 3),
    early_added_ttfb_p99_ms: round(pct(early, 99), 3),
    added_gap_p50_ms: round(pct(out.agent.lat, 50) - pct(out.direct.lat, 50), 3),
    added_gap_p99_ms: round(pct(out.agent.lat, 99) - pct(out.direct.lat, 99), 3),
    // Time the hypervisor ran something else on this VM's cores while the rounds ran (Linux steal
    // time, summed over cores): pauses of a few ms that no process here can see or avoid.
    host_steal_ms: steal === undefined ? null : Math.round(steal),
    host_steal_pct: steal === undefined ? null : round((steal / (laneMs * cpus().length)) * 100, 2),
    // How often the agent collected while the rounds ran (it allocates per job and per chunk).
    agent_gcs_during_rounds: gcs.filter(([at]) => at >= windows[0]![0] && at <= windows.at(-1)![1]).length,
    slow_rounds,
    prompt_16kb_added_ttfb_p50_ms: kb16.p50,
    prompt_16kb_added_ttfb_p99_ms: kb16.p99,
    prompt_100kb_added_ttfb_p50_ms: kb100?.p50 ?? null,
    prompt_100kb_added_ttfb_p99_ms: kb100?.p99 ?? null,
  };
  log(`A ${JSON.stringify(r)}`);
  return r;
}

// ---- B and C: concurrency sweep, agent CPU per chunk ----
async function step(path: Path, virtual: number, seconds: number) {
  // One agent may run at most 256 jobs (limits.max_concurrent, PROTOCOL.md section 8): beyond that the
  // same chunk rate is offered as 256 streams at a proportionally higher token rate.
  const streams = Math.min(virtual, 256);
  const rate = (100 * virtual) / streams;
  await engine.setRate(rate);
  const maxTokens = Math.round(rate * seconds);
  const lat: number[] = [];
  const consumers = Array.from({ length: streams }, () => new StreamConsumer(lat));
  const before = path === 'agent' ? await worker.ask<Usage>({ cmd: 'usage' }) : undefined;
  await engine.resetCounters();
  const t0 = performance.now();
  await Promise.all(consumers.map((c) => run(path, c, maxTokens)));
  const wall = (performance.now() - t0) / 1000;
  const after = path === 'agent' ? await worker.ask<Usage>({ cmd: 'usage' }) : undefined;
  const chunks = consumers.reduce((n, c) => n + c.chunks, 0);
  const expected = streams * (maxTokens + 2);
  const lost = consumers.reduce((n, c) => n + c.lost, 0) + Math.max(0, expected - chunks);
  const stalled = consumers.filter((c) => c.maxGapMs > 1000).length;
  return {
    streams,
    tokens_per_sec_per_stream: rate,
    chunks,
    chunks_per_sec: Math.round(chunks / wall),
    lost,
    stalled,
    lat_p50_ms: pct(lat, 50),
    lat_p99_ms: pct(lat, 99),
    cpu_us_per_chunk: before && after ? (after.cpuUs - before.cpuUs) / Math.max(1, chunks) : undefined,
    // Where the agent's CPU goes at this load: its own code (user) or the kernel's (system: reads of the
    // engine sockets, writes to the coordinator), and how many syscalls and context switches per chunk.
    per_chunk:
      before && after
        ? {
            user_us: (after.userUs - before.userUs) / Math.max(1, chunks),
            system_us: (after.systemUs - before.systemUs) / Math.max(1, chunks),
            syscalls: (after.syscalls - before.syscalls) / Math.max(1, chunks),
            voluntary_switches: (after.voluntary - before.voluntary) / Math.max(1, chunks),
            involuntary_switches: (after.involuntary - before.involuntary) / Math.max(1, chunks),
          }
        : undefined,
    engine_ceiling_chunks_per_sec: (await engine.counters()).ceiling,
  };
}

async function laneB() {
  const levels = quick ? [1, 16, 64, 256, 512, 1024] : [1, 4, 16, 64, 128, 256, 512, 768, 1024];
  const seconds = quick ? 4 : 10;
  const rows = [];
  for (const virtual of levels) {
    const d = await step('direct', virtual, seconds);
    const a = await step('agent', virtual, seconds);
    const row = {
      offered_streams: virtual,
      streams: a.streams,
      tokens_per_sec_per_stream: a.tokens_per_sec_per_stream,
      direct_chunks_per_sec: d.chunks_per_sec,
      agent_chunks_per_sec: a.chunks_per_sec,
      agent_lost: a.lost,
      agent_stalled: a.stalled,
      direct_lost: d.lost,
      added_gap_p50_ms: round(a.lat_p50_ms - d.lat_p50_ms, 3),
      added_gap_p99_ms: round(a.lat_p99_ms - d.lat_p99_ms, 3),
      agent_cpu_us_per_chunk: round(a.cpu_us_per_chunk ?? Number.NaN, 2),
      agent_user_us_per_chunk: round(a.per_chunk?.user_us ?? Number.NaN, 2),
      agent_system_us_per_chunk: round(a.per_chunk?.system_us ?? Number.NaN, 2),
      agent_syscalls_per_chunk: round(a.per_chunk?.syscalls ?? Number.NaN, 2),
      agent_voluntary_switches_per_chunk: round(a.per_chunk?.voluntary_switches ?? Number.NaN, 3),
      agent_involuntary_switches_per_chunk: round(a.per_chunk?.involuntary_switches ?? Number.NaN, 3),
      engine_ceiling_chunks_per_sec: Math.max(
        d.engine_ceiling_chunks_per_sec,
        a.engine_ceiling_chunks_per_sec,
      ),
    };
    log(`B ${JSON.stringify(row)}`);
    rows.push(row);
  }
  const held = rows.filter((r) => r.agent_lost === 0 && r.agent_stalled === 0 && r.direct_lost === 0);
  const best = held.at(-1);
  return {
    seconds_per_step: seconds,
    rows,
    largest_load_held: best
      ? { offered_streams: best.offered_streams, chunks_per_sec: best.agent_chunks_per_sec }
      : null,
    cpu_us_per_chunk_at_largest_load: best?.agent_cpu_us_per_chunk ?? null,
  };
}

// ---- D: memory per active stream, and recovered after ----
async function laneD() {
  await engine.setRate(10);
  const n = 256;
  const base = await worker.ask<Usage>({ cmd: 'gc' });
  const consumers = Array.from({ length: n }, () => new StreamConsumer([]));
  const ids = consumers.map(() => randomUUID());
  const runs = consumers.map((c, i) => viaAgent(c, 100_000, ids[i]));
  void runs;
  while (consumers.some((c) => c.chunks < 2)) await sleep(20);
  const loaded = await worker.ask<Usage>({ cmd: 'gc' });
  for (const id of ids) coord.cancel(id);
  while ((await engine.counters()).active > 0) await sleep(20);
  await sleep(200);
  const after = await worker.ask<Usage>({ cmd: 'gc' });
  const r = {
    streams: n,
    heap_per_stream_kb: round((loaded.heap - base.heap) / n / 1024, 1),
    memory_per_stream_kb: round((loaded.heap + loaded.external - base.heap - base.external) / n / 1024, 1),
    heap_base_mb: round(base.heap / 1048576, 1),
    heap_loaded_mb: round(loaded.heap / 1048576, 1),
    heap_after_mb: round(after.heap / 1048576, 1),
    recovered_pct: round((100 * (loaded.heap - after.heap)) / Math.max(1, loaded.heap - base.heap), 1),
  };
  log(`D ${JSON.stringify(r)}`);
  return r;
}

// ---- E: the coordinator stops reading for 5 s ----
async function laneE() {
  const streams = 256;
  const virtual = 500;
  const rate = (100 * virtual) / streams;
  await engine.setRate(rate);
  const seconds = 8;
  const maxTokens = Math.round(rate * seconds);
  const consumers = Array.from({ length: streams }, () => new StreamConsumer([]));
  const base = await worker.ask<Usage>({ cmd: 'gc' });
  const done = Promise.all(consumers.map((c) => viaAgent(c, maxTokens)));
  while (consumers.some((c) => c.chunks < 5)) await sleep(10);
  coord.pauseReading();
  let peakRss = 0;
  let peakHeap = 0;
  let peakOutbound = 0;
  const t0 = performance.now();
  const chunksAtPause = consumers.reduce((n, c) => n + c.chunks, 0);
  const writtenAtPause = (await engine.counters()).written;
  while (performance.now() - t0 < 5000) {
    const u = await worker.ask<Usage>({ cmd: 'usage' });
    peakRss = Math.max(peakRss, u.rss);
    peakHeap = Math.max(peakHeap, u.heap + u.external);
    peakOutbound = Math.max(peakOutbound, u.outbound);
    await sleep(250);
  }
  // What the agent really holds at the end of the pause (sampled figures include garbage not yet collected).
  const live = await worker.ask<Usage>({ cmd: 'gc' });
  const atResume = await engine.counters();
  const engineWroteWhilePaused = atResume.written - writtenAtPause;
  void chunksAtPause;
  const pausedUpstream = atResume.pausedStreams;
  coord.resumeReading();
  const terminals = await done;
  const complete = consumers.every((c) => c.lost === 0 && c.nextSeq === maxTokens + 2);
  const r = {
    offered_streams: virtual,
    streams,
    pause_s: 5,
    peak_rss_mb: round(peakRss / 1048576, 1),
    peak_heap_and_buffers_mb: round(peakHeap / 1048576, 1),
    base_heap_and_buffers_mb: round((base.heap + base.external) / 1048576, 1),
    upstream_streams_paused: pausedUpstream,
    peak_agent_outbound_buffer_mb: round(peakOutbound / 1048576, 2),
    live_heap_and_buffers_at_end_of_pause_mb: round((live.heap + live.external) / 1048576, 1),
    live_heap_mb: round(live.heap / 1048576, 1),
    live_external_mb: round(live.external / 1048576, 1),
    engine_chunks_written_while_paused: engineWroteWhilePaused,
    engine_chunks_offered_while_paused: Math.round(streams * rate * 5),
    all_bytes_in_order: complete,
    jobs_done: terminals.filter((t) => t.type === 'job_done').length,
  };
  log(`E ${JSON.stringify(r)}`);
  return r;
}

// ---- F: cancellation ----
async function laneF() {
  await engine.setRate(100);
  const rounds = quick ? 30 : 100;
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const c = new StreamConsumer([]);
    const id = randomUUID();
    void viaAgent(c, 100_000, id);
    while (c.chunks < 1) await sleep(2);
    const closed = new Promise<number>((resolve) => {
      engine.onAbort = resolve;
    });
    const t0 = clock();
    coord.cancel(id);
    times.push((await closed) - t0);
  }
  engine.onAbort = undefined;
  const r = {
    rounds,
    cancel_to_upstream_close_p50_ms: round(pct(times, 50), 3),
    cancel_to_upstream_close_p99_ms: round(pct(times, 99), 3),
  };
  log(`F ${JSON.stringify(r)}`);
  return r;
}

// ---- R: through a real engine ----
/**
 * The added time to first byte against llama.cpp's own llama-server (the tiny model of the real-engine
 * tier) instead of the emulator: a second agent process and coordinator, the same paired rounds. Skipped,
 * saying why, where the server cannot be set up (no Debian tooling, sid out of reach).
 */
async function laneR() {
  const { ensureTinyModel, LlamaServer } = await import('@usepod-agent/testkit/real');
  let server: Awaited<ReturnType<typeof LlamaServer.start>>;
  try {
    server = await LlamaServer.start({
      model: await ensureTinyModel(),
      alias: 'bench/model',
      ctx: 2048,
      parallel: 4,
    });
  } catch (err) {
    log(`R skipped: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
  const rcoord = new BenchCoordinator();
  const rworker = new Worker();
  await rworker.ask({
    cmd: 'start',
    coordinator: await rcoord.listening(),
    engine: server.url,
    kind: 'llamacpp',
  });
  await rcoord.ready();
  const tokens = 8;
  const one = async (path: Path) => {
    const c = new StreamConsumer([]);
    const t0 = clock();
    if (path === 'direct') await direct(c, tokens, 'hello there', server.url);
    else await rcoord.dispatch(randomUUID(), c, tokens, 'hello there');
    return c.firstByteAt! - t0;
  };
  // Warm both paths (V8 on the agent's side, the prompt cache on the engine's), then measure in pairs.
  for (let i = 0; i < 300; i++) {
    await one('direct');
    await one('agent');
  }
  const rounds = quick ? 300 : 1000;
  const direct_: number[] = [];
  const added: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const d = await one('direct');
    const a = await one('agent');
    direct_.push(d);
    added.push(a - d);
  }
  rworker.send({ cmd: 'exit' });
  await rcoord.close();
  await server.stop();
  const r = {
    engine: 'llama-server b11669 (tiny random-weight model)',
    rounds,
    ttft_direct_p50_ms: round(pct(direct_, 50), 3),
    added_ttft_p50_ms: round(pct(added, 50), 3),
    added_ttft_p99_ms: round(pct(added, 99), 3),
  };
  log(`R ${JSON.stringify(r)}`);
  return r;
}

// ---- V: side by side with the Rust agent 0.3.3 (versus.ts) ----
async function laneVersus(): Promise<VersusResult | string> {
  const { path, looked } = rustAgentPath();
  if (!path) {
    const line = `V (side by side with the Rust agent 0.3.3): skipped, no binary at ${looked} (set USEPOD_RUST_AGENT, or build it with ../shared/tools/build-rust-agent.sh).`;
    log(line);
    return line;
  }
  return laneV(
    { engineUrl, setRate: (v) => engine.setRate(v), direct: (c, n) => direct(c, n), quick, log },
    path,
  );
}

/** The README shows the latest figures between two tags. */
function toReadme(tag: string, md: string): void {
  const readmePath = here('../README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const startTag = `<!-- ${tag}:start -->`;
  const endTag = `<!-- ${tag}:end -->`;
  if (!readme.includes(startTag) || !readme.includes(endTag)) return;
  const next = `${readme.slice(0, readme.indexOf(startTag) + startTag.length)}\n${md}\n${readme.slice(readme.indexOf(endTag))}`;
  writeFileSync(readmePath, next);
  // The README is held to the formatter's layout by the linter (npm test); tables get aligned here.
  execFileSync(here('../node_modules/.bin/biome'), ['format', '--write', readmePath], { stdio: 'ignore' });
}

/** Lane V's results: bench/results/versus.{json,md} and the README's side-by-side table (when measured). */
function saveVersus(v: VersusResult | string): string {
  const md =
    typeof v === 'string'
      ? v
      : `${new Date().toISOString().slice(0, 10)}, \`npm run bench${quick ? ' -- --quick' : ''}\`, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} at the end (the VM's other work moves the latency figures most). ${versusMarkdown(v)}`;
  mkdirSync(here('./results'), { recursive: true });
  // BENCH_NO_SAVE=1: a comparison run of two builds, not a result.
  if (typeof v !== 'string' && !process.env.BENCH_NO_SAVE) {
    writeFileSync(
      here('./results/versus.json'),
      `${JSON.stringify({ date: new Date().toISOString(), ...v }, null, 2)}\n`,
    );
    writeFileSync(here('./results/versus.md'), `${md}\n`);
    toReadme('bench:versus', md);
  }
  return md;
}

const only = process.argv.find((a) => a.startsWith('--lanes='))?.slice(8);
if (only === 'V') {
  const v = await laneVersus();
  process.stdout.write(`${saveVersus(v)}\n`);
  worker.send({ cmd: 'exit' });
  engine.close();
  process.exit(0);
}
if (only === 'R') {
  await laneR();
  worker.send({ cmd: 'exit' });
  engine.close();
  process.exit(0);
}
if (only === 'A') {
  await laneA();
  worker.send({ cmd: 'exit' });
  engine.close();
  await sleep(1500);
  if (traceDir) {
    const { traceReport } = await import('./trace-report.js');
    saveTrace?.();
    log(traceReport(traceDir));
  }
  process.exit(0);
}
if (only === 'E') {
  await laneE();
  process.exit(0);
}
if (only === 'B') {
  for (const v of process.env.BENCH_LEVELS ? process.env.BENCH_LEVELS.split(',').map(Number) : [256, 1024]) {
    const d = await step('direct', v, 4);
    const a = await step('agent', v, 4);
    log(
      `B ${v} direct ${d.chunks_per_sec} agent ${a.chunks_per_sec} lost ${a.lost} cpu ${a.cpu_us_per_chunk?.toFixed(2)} (user ${a.per_chunk?.user_us.toFixed(2)} sys ${a.per_chunk?.system_us.toFixed(2)}) syscalls ${a.per_chunk?.syscalls.toFixed(2)} ctxsw ${a.per_chunk?.voluntary_switches.toFixed(3)}/${a.per_chunk?.involuntary_switches.toFixed(3)} added p50 ${(a.lat_p50_ms - d.lat_p50_ms).toFixed(3)} p99 ${(a.lat_p99_ms - d.lat_p99_ms).toFixed(3)}`,
    );
  }
  // A clean exit lets --cpu-prof write its profile.
  worker.send({ cmd: 'exit' });
  await sleep(1500);
  process.exit(0);
}
const started = Date.now();
const A = await laneA();
const B = await laneB();
const D = await laneD();
const E = await laneE();
const F = await laneF();
await worker.ask({ cmd: 'stop' });
const R = await laneR();
const V = saveVersus(await laneVersus());
engine.close();
await coord.close();
await pool.close();

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memory_gb: round(totalmem() / 2 ** 30, 1),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
};
const targets = {
  added_ttfb_p50_ms: {
    target: '<= 0.5',
    value: A.added_ttfb_p50_ms,
    met: (A.added_ttfb_p50_ms ?? 99) <= 0.5,
  },
  added_ttfb_p99_ms: { target: '<= 2', value: A.added_ttfb_p99_ms, met: (A.added_ttfb_p99_ms ?? 99) <= 2 },
  relayed_chunks_per_sec_no_loss: {
    target: '>= 25000',
    value: B.largest_load_held?.chunks_per_sec ?? 0,
    met: (B.largest_load_held?.chunks_per_sec ?? 0) >= 25_000,
  },
  agent_cpu_us_per_chunk: {
    target: '<= 15',
    value: B.cpu_us_per_chunk_at_largest_load,
    met: (B.cpu_us_per_chunk_at_largest_load ?? 99) <= 15,
  },
  heap_kb_per_stream: {
    target: '<= 64',
    value: D.heap_per_stream_kb,
    met: (D.heap_per_stream_kb ?? 999) <= 64,
  },
  cancel_p99_ms: {
    target: '<= 20',
    value: F.cancel_to_upstream_close_p99_ms,
    met: (F.cancel_to_upstream_close_p99_ms ?? 99) <= 20,
  },
};
const result = {
  date: new Date().toISOString(),
  quick,
  duration_s: Math.round((Date.now() - started) / 1000),
  machine,
  targets,
  A,
  B,
  D,
  E,
  F,
  R: R ?? null,
};
mkdirSync(here('./results'), { recursive: true });
writeFileSync(here('./results/latest.json'), `${JSON.stringify(result, null, 2)}\n`);

const md = [
  `Relay benchmark, ${result.date.slice(0, 10)}, \`npm run bench${quick ? ' -- --quick' : ''}\` (${result.duration_s} s) on ${machine.cores} cores (${machine.cpu}), ${machine.memory_gb} GB, Node ${machine.node}.`,
  '',
  '| target | goal | measured | met |',
  '| --- | --- | --- | --- |',
  ...Object.entries(targets).map(
    ([k, v]) => `| ${k.replaceAll('_', ' ')} | ${v.target} | ${v.value} | ${v.met ? 'yes' : 'no'} |`,
  ),
  '',
  '| offered streams | streams x tok/s | direct chunks/s | agent chunks/s | lost | stalled | added gap p50 / p99 ms | agent CPU µs/chunk (user + sys) | syscalls / chunk | context switches / chunk (vol / invol) | engine ceiling chunks/s |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...B.rows.map(
    (r) =>
      `| ${r.offered_streams} | ${r.streams} x ${round(r.tokens_per_sec_per_stream, 0)} | ${r.direct_chunks_per_sec} | ${r.agent_chunks_per_sec} | ${r.agent_lost} | ${r.agent_stalled} | ${r.added_gap_p50_ms} / ${r.added_gap_p99_ms} | ${r.agent_cpu_us_per_chunk} (${r.agent_user_us_per_chunk} + ${r.agent_system_us_per_chunk}) | ${r.agent_syscalls_per_chunk} | ${r.agent_voluntary_switches_per_chunk} / ${r.agent_involuntary_switches_per_chunk} | ${r.engine_ceiling_chunks_per_sec} |`,
  ),
  '',
  `A (one stream, ${A.rounds} rounds once warm): time to first byte direct ${A.ttfb_direct_p50_ms} ms, through the agent ${A.ttfb_agent_p50_ms} ms p50; over the agent's first 300 jobs after start, before V8 had optimised its job handling, it added ${A.early_added_ttfb_p50_ms} ms p50, ${A.early_added_ttfb_p99_ms} ms p99; added gap between chunks ${A.added_gap_p50_ms} ms p50, ${A.added_gap_p99_ms} ms p99. A WebSocket ping to the agent process and back alone takes ${A.ws_ping_rtt_p50_ms} ms p50. Of the ${A.slow_rounds.length} slowest rounds (${A.slow_rounds.map((r) => r.added_ms).join(', ')} ms added), ${A.slow_rounds.filter((r) => r.agent_gc).length} had a garbage collection of the agent inside them, ${A.slow_rounds.filter((r) => r.driver_gc || r.engine_gc).length} one of the driver or the engine, and the rest none; the hypervisor took ${A.host_steal_pct ?? '?'}% of the cores' time (steal) while the rounds ran. With a 16 KB prompt instead of a few bytes, the agent adds ${A.prompt_16kb_added_ttfb_p50_ms} ms p50, ${A.prompt_16kb_added_ttfb_p99_ms} ms p99 (100 rounds)${A.prompt_100kb_added_ttfb_p50_ms === null ? '' : `; with 100 KB, ${A.prompt_100kb_added_ttfb_p50_ms} ms p50, ${A.prompt_100kb_added_ttfb_p99_ms} ms p99`}.`,
  `D (${D.streams} active streams): ${D.heap_per_stream_kb} KB of heap per stream after GC (heap ${D.heap_base_mb} MB idle, ${D.heap_loaded_mb} MB loaded, ${D.heap_after_mb} MB once the streams were cancelled).`,
  `E (coordinator stops reading for 5 s under ${E.offered_streams} streams' worth of load): the agent's send buffer stopped at ${E.peak_agent_outbound_buffer_mb} MB (high-water mark 4 MB) and relays paused; the agent held ${E.live_heap_and_buffers_at_end_of_pause_mb} MB of heap and buffers at the end of the pause (idle ${E.base_heap_and_buffers_mb} MB; RSS peak ${E.peak_rss_mb} MB), a bounded read-ahead per paused stream, while the rest of the ${E.engine_chunks_written_while_paused} chunks the engine wrote waited unread in kernel socket buffers; afterwards all bytes arrived in order: ${E.all_bytes_in_order ? 'yes' : 'no'} (${E.jobs_done} jobs done).`,
  `F (${F.rounds} cancels): job_cancel to the engine seeing its connection close ${F.cancel_to_upstream_close_p50_ms} ms p50, ${F.cancel_to_upstream_close_p99_ms} ms p99.`,
  R
    ? `R (a real engine, ${R.engine}, ${R.rounds} paired rounds once warm): time to first token direct ${R.ttft_direct_p50_ms} ms p50; the agent adds ${R.added_ttft_p50_ms} ms p50, ${R.added_ttft_p99_ms} ms p99.`
    : 'R (a real engine): skipped, llama-server could not be set up here.',
].join('\n');
writeFileSync(here('./results/latest.md'), `${md}\n\n${V}\n`);

toReadme('bench', md);
process.stdout.write(`${md}\n\n${V}\n`);
process.exit(0);
