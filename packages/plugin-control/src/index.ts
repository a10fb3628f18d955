import { randomUUID } from 'node:crypto';
import {
  type AgentAccess,
  type DoctorFinding,
  definePlugin,
  errorMessage,
  type Logger,
} from '@usepod-agent/core';
import { z } from 'zod';
import { PauseStore, readPause } from './pause-state.js';
import { controlPath, pauseFile, type UpdateAnswer } from './protocol.js';
import { answers, type ControlServer, pathProblem, serveControl } from './server.js';

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
  type UpdateAnswer,
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
  /** How long `update` waits for plugin-update's answer (default 5,000 ms). */
  updateAnswerMs?: number;
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

/** The plugin that owns updates, and the topics it is asked and answers on (plugins' event stream). */
export const UPDATE_PLUGIN = '@usepod-agent/plugin-update';
export const UPDATE_NOW = 'update.now';
export const UPDATE_NOW_ANSWER = 'update.now.answer';

const updateAnswer = z.union([
  z.object({ id: z.string().max(64), ok: z.literal(true), drainTimeoutS: z.number().nonnegative() }),
  z.object({ id: z.string().max(64), ok: z.literal(false), why: z.string().max(600) }),
]);

/**
 * `update` on the socket, passed to plugin-update over the plugins' event stream (features are plugins:
 * this one owns the owner's socket, that one owns updates): published with an id, answered with it.
 */
class UpdateRequests {
  readonly #waiting = new Map<string, (a: UpdateAnswer) => void>();

  constructor(
    private readonly publish: (topic: string, data: unknown) => void,
    /** How long an answer is waited for (plugin-update reads a small file or two). */
    private readonly answerMs: number,
  ) {}

  ask(version: string): Promise<UpdateAnswer> {
    const id = randomUUID();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#waiting.delete(id);
        resolve({
          ok: false,
          why: 'no answer from the updater: @usepod-agent/plugin-update is not running in this agent',
        });
      }, this.answerMs);
      this.#waiting.set(id, (a) => {
        clearTimeout(t);
        this.#waiting.delete(id);
        resolve(a);
      });
      this.publish(UPDATE_NOW, { id, version });
    });
  }

  /** An answer heard on the stream; only plugin-update's, only to a question asked. */
  heard(from: string, data: unknown): void {
    if (from !== UPDATE_PLUGIN) return;
    const a = updateAnswer.safeParse(data);
    if (!a.success) return;
    const { id, ...answer } = a.data;
    this.#waiting.get(id)?.(answer as UpdateAnswer);
  }
}

/** The owner's hold as pause.json keeps it, or null. */
function ownerPause(agent: AgentAccess): { reason: string; until?: number } | null {
  const h = agent.holds().find((x) => x.by === 'owner');
  if (!h) return null;
  return { reason: h.reason, ...(h.until ? { until: Date.parse(h.until) } : {}) };
}

/**
 * The owner's controls (issue 19) as a feature plugin (issue 27), on by default: a Unix socket beside the
 * key (`usepod-agent pause`, `resume`, `selftest`, `update --now`), and the owner's pause kept in `pause.json` so that it,
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
    /** Another agent serves this folder's socket: its pause.json is its own, neither read nor written here. */
    let another = false;
    const updates = new UpdateRequests((topic, data) => ctx.publish(topic, data), o.updateAnswerMs ?? 5_000);
    hooks.onStart.tapPromise('control', async () => {
      const path = controlPath(ctx.keyPath);
      // Two keys in one folder: replacing the other agent's live socket would send its owner's `pause` here,
      // and restoring its pause.json would pause this agent with no way to resume it.
      if (process.platform !== 'win32' && (await answers(path))) {
        another = true;
        ctx.log.warn(
          'pause and resume are unavailable: another agent serves the control socket in this folder',
          {
            socket: path,
            fix: 'give each identity (identity.key_path) a folder of its own',
          },
        );
        return;
      }
      // A pause from before a restart holds from the first connection on.
      await restore(ctx.agent, store, ctx.log);
      try {
        server = await serveControl(ctx.agent, ctx.keyPath, {
          log: ctx.log,
          store,
          ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}),
          ...(o.maxConnections !== undefined ? { maxConnections: o.maxConnections } : {}),
          update: (version) => updates.ask(version),
        });
      } catch (err) {
        ctx.log.warn('pause and resume are unavailable: the control socket could not be opened', {
          error: errorMessage(err),
        });
      }
    });
    // Only the owner's hold is kept; a timed pause that ends by itself forgets its file too.
    hooks.onEvent.tap('control', (e) => {
      if (e.type === 'plugin' && e.topic === UPDATE_NOW_ANSWER) updates.heard(e.from, e.data);
      if ((e.type === 'paused' || e.type === 'resumed') && e.by === 'owner' && !another)
        store.set(ownerPause(ctx.agent));
    });
    hooks.onClose.tapPromise('control', async () => {
      await server?.close();
      await store.close();
    });
  },
}));
