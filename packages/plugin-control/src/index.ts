import {
  type AgentAccess,
  type DoctorFinding,
  definePlugin,
  errorMessage,
  type Logger,
} from '@usepod-agent/core';
import { z } from 'zod';
import { PauseStore, readPause } from './pause-state.js';
import { controlPath, pauseFile } from './protocol.js';
import { type ControlServer, pathProblem, serveControl } from './server.js';

export { control, runningSelfTests } from './client.js';
export {
  type ControlReply,
  type ControlRequest,
  checkUntil,
  controlPath,
  type HoldView,
  MAX_PAUSE_MS,
  MAX_REASON,
  pauseFile,
} from './protocol.js';

/** `[control]`: the socket is on unless `socket = false` (an embedded agent with its own controls). */
export const controlSection = z.strictObject({ socket: z.boolean().default(true) });

/** For embedding code and tests: the socket's bounds and the retry delay of a failed pause write. */
export interface ControlOptions {
  /** A connection must send its request line within this (default 5,000 ms). */
  idleMs?: number;
  /** Connections open at once (default 32). */
  maxConnections?: number;
  /** First delay before a failed pause.json write is tried again (default 1,000 ms, doubling to 60 s). */
  retryMs?: number;
}

/** Puts the owner's pause kept from before a restart back, when it is one; anything else is left. */
async function restore(agent: AgentAccess, store: PauseStore, log: Logger): Promise<void> {
  const r = await readPause(store.path);
  if (r.kind === 'none') return;
  if (r.kind === 'ignored') {
    if (r.warn) log.warn('pause.json is ignored', { file: store.path, why: r.why });
    else log.info('pause.json is not restored', { file: store.path, why: r.why });
    // Removed (a link itself, never its target), so it is not read again at every start.
    store.set(null);
    return;
  }
  try {
    agent.pause({
      ...(r.pause.reason ? { reason: r.pause.reason } : {}),
      ...(r.pause.until !== undefined ? { until: new Date(r.pause.until) } : {}),
    });
    log.info('the owner’s pause is restored', { reason: r.pause.reason, file: store.path });
  } catch (err) {
    log.warn('pause.json is ignored', { file: store.path, why: errorMessage(err) });
    store.set(null);
  }
}

/** `doctor`: whether pause and resume can work (the socket's folder and path) and what pause.json holds. */
async function controlChecks(keyPath: string): Promise<DoctorFinding[]> {
  const path = controlPath(keyPath);
  const problem = process.platform === 'win32' ? undefined : pathProblem(path);
  const socket: DoctorFinding = problem
    ? {
        name: 'control',
        level: 'warn',
        detail: problem.level === 'refuse' ? `pause and resume cannot work: ${problem.why}` : problem.why,
        fix: problem.fix,
      }
    : { name: 'control', level: 'ok', detail: `control socket ${path}` };
  const r = await readPause(pauseFile(keyPath));
  if (r.kind === 'ignored' && r.warn) {
    const file = pauseFile(keyPath);
    return [
      socket,
      { name: 'pause', level: 'warn', detail: `${file} is ignored: ${r.why}`, fix: `remove ${file}` },
    ];
  }
  return [socket];
}

/** The owner's hold as pause.json keeps it, or null. */
function ownerPause(agent: AgentAccess): { reason: string; until?: number } | null {
  const h = agent.holds().find((x) => x.by === 'owner');
  if (!h) return null;
  return { reason: h.reason, ...(h.until ? { until: Date.parse(h.until) } : {}) };
}

/**
 * The owner's controls (issue 19) as a feature plugin (issue 27), on by default: a Unix socket beside the
 * key (`usepod-agent pause`, `resume`, `selftest`), and the owner's pause kept in `pause.json` so that it,
 * and only it, outlives a restart (issue 28: GPU, schedule and other holds are recomputed at start).
 */
// biome-ignore lint/suspicious/noConfusingVoidType: `control()` with no options, as run applies it.
export default definePlugin<ControlOptions | void>((opts) => ({
  name: '@usepod-agent/plugin-control',
  apiVersion: 1,
  sections: ['control'],
  apply(hooks, ctx) {
    const cfg = ctx.section('control', controlSection) ?? controlSection.parse({});
    if (!cfg.socket) return;
    const o = opts ?? {};
    ctx.doctorCheck('control', () => controlChecks(ctx.keyPath));
    const store = new PauseStore(pauseFile(ctx.keyPath), {
      log: ctx.log,
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
    });
    let server: ControlServer | undefined;
    hooks.onStart.tapPromise('control', async () => {
      // A pause from before a restart holds from the first connection on.
      await restore(ctx.agent, store, ctx.log);
      try {
        server = await serveControl(ctx.agent, ctx.keyPath, {
          log: ctx.log,
          store,
          ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}),
          ...(o.maxConnections !== undefined ? { maxConnections: o.maxConnections } : {}),
        });
      } catch (err) {
        ctx.log.warn('pause and resume are unavailable: the control socket could not be opened', {
          error: errorMessage(err),
        });
      }
    });
    // Only the owner's hold is kept; a timed pause that ends by itself forgets its file too.
    hooks.onEvent.tap('control', (e) => {
      if ((e.type === 'paused' || e.type === 'resumed') && e.by === 'owner') store.set(ownerPause(ctx.agent));
    });
    hooks.onClose.tapPromise('control', async () => {
      await server?.close();
      await store.close();
    });
  },
}));
