// The agent under test, in a process of its own and without any loader hooks (plain `node`, as the
// CLI runs in production), so its CPU, memory and latency are measured apart from the engine and the
// coordinator. Driven over IPC by relay.ts. Plain JavaScript on purpose: a TypeScript loader would sit
// on the agent's module loading and skew what is measured.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { createAgent, silentLogger } from '@usepod-agent/core';
import llamacpp from '@usepod-agent/plugin-llamacpp';
import vllm from '@usepod-agent/plugin-vllm';

let agent;

// Garbage collections, as epoch-ms intervals, so the driver can tell which rounds a pause fell into
// (gc-log.ts does the same for the driver and the engine; this file stays plain JavaScript).
const gcs = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcs.push([performance.timeOrigin + e.startTime, e.duration, e.detail?.kind]);
    if (gcs.length > 10_000) gcs.shift();
  }
}).observe({ entryTypes: ['gc'] });

/** Syscalls and context switches of this process so far, from /proc (zeros where there is none). */
function procCounters() {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const status = readFileSync('/proc/self/status', 'utf8');
    const field = (text, name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return {
      syscalls: field(io, 'syscr') + field(io, 'syscw'),
      voluntary: field(status, 'voluntary_ctxt_switches'),
      involuntary: field(status, 'nonvoluntary_ctxt_switches'),
    };
  } catch {
    return { syscalls: 0, voluntary: 0, involuntary: 0 };
  }
}

function usage() {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const snap = agent?.snapshot();
  return {
    cpuUs: cpu.user + cpu.system,
    userUs: cpu.user,
    systemUs: cpu.system,
    ...procCounters(),
    heap: mem.heapUsed,
    rss: mem.rss,
    // `external` already includes `arrayBuffers` (Buffers).
    external: mem.external,
    outbound: snap?.outboundBytes ?? 0,
    inFlight: snap?.inFlight ?? 0,
  };
}

process.on('message', async (msg) => {
  if (msg.cmd === 'start') {
    const dir = mkdtempSync(join(tmpdir(), 'usepod-bench-'));
    // BENCH_LEDGER=1: the installed default plugins as `run` has them (the ledger's worker thread writing
    // every job, the control socket), to measure what they cost the job path; else core alone, as lanes
    // were always measured (decision 0004).
    agent = createAgent({
      defaultPlugins: Boolean(process.env.BENCH_LEDGER),
      config: {
        coordinator: { url: msg.coordinator },
        identity: { key_path: join(dir, 'identity.key') },
        // vLLM's emulator by default; lane R points a llamacpp backend at a real llama-server.
        backends: [{ kind: msg.kind ?? 'vllm', url: msg.engine }],
        limits: { max_concurrent: 256 },
        observability: { prometheus_addr: 'off' },
      },
      plugins: [vllm, llamacpp],
      allowInsecure: true,
      logger: silentLogger,
      timing: { heartbeatIntervalMs: 3_600_000 },
    });
    await agent.start();
    process.send({ ok: true });
  } else if (msg.cmd === 'gcs') {
    process.send({ gcs });
  } else if (msg.cmd === 'usage') {
    process.send(usage());
  } else if (msg.cmd === 'gc') {
    globalThis.gc?.();
    process.send(usage());
  } else if (msg.cmd === 'snapshot') {
    globalThis.gc?.();
    const { writeHeapSnapshot } = await import('node:v8');
    process.send({ file: writeHeapSnapshot(msg.file) });
  } else if (msg.cmd === 'stop') {
    await agent?.stop({ graceMs: 0 });
    process.send({ ok: true });
    process.exit(0);
  } else if (msg.cmd === 'exit') {
    process.exit(0);
  }
});
