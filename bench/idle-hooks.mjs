// Preloaded into `usepod-agent run` by idle-memory.ts: on SIGUSR2, writes V8's heap figures to $IDLE_OUT,
// and with IDLE_MODULES=1 the modules the process loaded (Node's loader hooks for ES modules, Module._load
// for CommonJS). Only then: a loader hook runs on a thread of its own, a second V8 isolate resident beside
// the agent, and every import waits on a round trip to it (start to online 0.2-0.5 s later; decision 0008,
// tenth pass). Plain JavaScript, like agent-worker.mjs: a TypeScript loader would itself be measured.
import { writeFileSync } from 'node:fs';
import Module, { register } from 'node:module';
import v8 from 'node:v8';
import { MessageChannel } from 'node:worker_threads';

const listing = Boolean(process.env.IDLE_MODULES || process.env.IDLE_LIST);
const loaded = new Set();
if (listing) {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (url) => loaded.add(url));
  port1.unref();
  register('./idle-loader.mjs', { parentURL: import.meta.url, data: { port: port2 }, transferList: [port2] });
  const load = Module._load;
  Module._load = function (request, parent, ...rest) {
    try {
      loaded.add(`file://${Module._resolveFilename(request, parent)}`);
    } catch {
      // a builtin or a module that fails to resolve: load() reports it
    }
    return load.call(this, request, parent, ...rest);
  };
}
process.on('SIGUSR2', () => {
  const files = [...loaded].filter((u) => u.startsWith('file://'));
  const byPackage = {};
  for (const u of files) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u) ?? /\/packages\/([^/]+)\//.exec(u);
    const k = m ? m[1] : 'other';
    byPackage[k] = (byPackage[k] ?? 0) + 1;
  }
  const heap = v8.getHeapStatistics();
  const spaces = Object.fromEntries(
    v8.getHeapSpaceStatistics().map((s) => [s.space_name, [s.space_used_size, s.physical_space_size]]),
  );
  writeFileSync(
    process.env.IDLE_OUT,
    JSON.stringify({
      modules: listing ? files.length : null,
      byPackage,
      memory: process.memoryUsage(),
      heap,
      spaces,
      ...(process.env.IDLE_LIST ? { files } : {}),
    }),
  );
});
