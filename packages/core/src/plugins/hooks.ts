import { createRequire } from 'node:module';
import type * as Tapable from 'tapable';
import type { Tap } from 'tapable';
import type { Backend, BackendModel } from '../backend/backend.js';
import { UsepodError } from '../errors.js';
import type { CloseKind } from '../protocol/close-kind.js';
import type { AuthResponseFrame, CapabilitiesFrame, CapabilityModel, JobFrame } from '../protocol/frames.js';
import type { Refusal } from '../relay/refusal.js';
import type { SelfTestResult } from '../routing/selftest-result.js';
import { TIMED_OUT, within } from '../timers.js';

/**
 * The four hook kinds the agent fires, required by path: tapable's index loads all twelve (decision 0008's
 * fourth pass). tapable has no `exports` map and the version is pinned.
 */
const requireTapable = createRequire(import.meta.url);
const AsyncSeriesBailHook: typeof Tapable.AsyncSeriesBailHook = requireTapable(
  'tapable/lib/AsyncSeriesBailHook.js',
);
const AsyncSeriesHook: typeof Tapable.AsyncSeriesHook = requireTapable('tapable/lib/AsyncSeriesHook.js');
const AsyncSeriesWaterfallHook: typeof Tapable.AsyncSeriesWaterfallHook = requireTapable(
  'tapable/lib/AsyncSeriesWaterfallHook.js',
);
const SyncHook: typeof Tapable.SyncHook = requireTapable('tapable/lib/SyncHook.js');

/**
 * Named stages of `onCapabilities`, in the order taps run. Backends add models
 * at DISCOVER, plugins adjust entries (prices, windows) at ADJUST, and policies
 * filter at POLICY, after everything else has had its say.
 */
export const CapabilityStage = {
  /** Core adds every servable model of every healthy backend. */
  DISCOVER: -1000,
  /** Change entries: prices, context windows, concurrency. */
  ADJUST: 0,
  /** Remove or cap entries: allow-lists, minimum prices. */
  POLICY: 1000,
} as const;

/** What a tap at `onJob` returns to serve a job: the backend that streams it. */
export interface JobHandle {
  backend: Backend;
}

export interface JobContext {
  readonly frame: Readonly<JobFrame>;
  /** Backends able to serve the model now, best first (see docs/hooks.md). */
  readonly candidates: readonly Backend[];
}

export interface JobOutcome {
  jobId: string;
  model: string;
  backend: string | undefined;
  outcome: 'done' | 'error' | 'cancelled';
  errorCode?: string;
  inputTokens: number;
  outputTokens: number;
  bytes: number;
  durationMs: number;
  firstByteMs: number | undefined;
  /** Why the job was turned away without reaching an engine, if it was (a missed job, but `malformed`). */
  refusal?: Refusal;
}

export interface SessionInfo {
  /** Undefined only while the coordinator has assigned none (an `auth_ok` without one, nothing stored). */
  providerId: string | undefined;
  coordinator: string;
}

export interface StartInfo {
  /** The provider id when the identity holds one. */
  providerId: string | undefined;
  /** Where the status server listens, when it runs. */
  statusAddress: { host: string; port: number } | undefined;
}

export interface CloseInfo {
  reason: 'stop' | 'error';
}

/**
 * Who holds the agent paused: `owner` (`usepod-agent pause`), `schedule` (quiet hours), `gpu` (GPU
 * yielding), `heat`, or any name a plugin holds under (`ctx.hold`). The agent is paused while any hold exists.
 */
export type PausedBy = string;

/** The agent's life cycle, in order; `backoff` waits between connection attempts. */
export type AgentState = 'idle' | 'starting' | 'connecting' | 'online' | 'backoff' | 'stopping' | 'stopped';

/**
 * The one observation stream (issue 27): every fact about the agent, published once, in one shape, to
 * `onEvent` taps and to `agent.on(type)` listeners alike. Strings that came from an engine or the
 * coordinator are already bounded and folded.
 */
export type AgentEvent =
  | { type: 'state'; state: AgentState }
  | { type: 'connected'; coordinator: string; providerId: string | undefined }
  /** An authenticated session ended. */
  | { type: 'disconnected'; coordinator: string; why: string; kind: CloseKind }
  | { type: 'auth_refused'; coordinator: string; why: string }
  /** A connection attempt failed or a session ended; the next one is in `waitMs`. */
  | { type: 'reconnect'; waitMs: number; preAuthFailures: number; after: CloseKind; why: string }
  | { type: 'capabilities'; frame: CapabilitiesFrame }
  /** The coordinator socket crossed the high-water mark (true) or drained below the low one (false). */
  | { type: 'backpressure'; congested: boolean }
  /** A job frame passed its checks and reached the executor (it may still be refused). */
  | { type: 'job_start'; jobId: string; model: string }
  | { type: 'job_end'; job: JobOutcome }
  | { type: 'selftest'; result: SelfTestResult }
  | { type: 'backend_down'; backend: string; kind: string; detail: string }
  | { type: 'backend_up'; backend: string; kind: string }
  | {
      type: 'model_withdrawn';
      /** Its self-tests failed, or its real jobs did (ejected until `until`, then tested again). */
      cause: 'selftests' | 'jobs';
      backend: string;
      model: string;
      detail: string;
      until: string | undefined;
    }
  | { type: 'model_back'; backend: string; model: string }
  /**
   * A hold was placed or changed (`by` its name); `until` is an ISO time, none: until released. With
   * `backends` it is scoped: only those backends' models are withdrawn, the agent is not paused.
   */
  | { type: 'paused'; by: PausedBy; reason: string; until: string | undefined; backends?: string[] }
  /** A hold was released; `paused` is true while other holds keep the agent paused. */
  | { type: 'resumed'; by: PausedBy; paused: boolean }
  | { type: 'budget_exhausted'; limit: number }
  /**
   * A plugin's message to the other plugins (`ctx.publish`): the GPU plugin's energy per job, which the
   * ledger records. `from` is the sender's name (set by core); `data` is plain JSON, a frozen copy, at
   * most 16 KiB, and untrusted to the receiver, which parses it (zod) before use.
   */
  | { type: 'plugin'; from: string; topic: string; data: unknown }
  /** A plugin's word to the owner (`ctx.notify`): the ledger cannot write, the GPU runs hot... */
  | {
      type: 'notice';
      plugin: string;
      name: string;
      severity: 'info' | 'warning' | 'critical';
      title: string;
      message: string;
      resolved: boolean;
    };

/** The event of one type: `EventOf<'job_end'>`. */
export type EventOf<T extends AgentEvent['type']> = Extract<AgentEvent, { type: T }>;

/** Builds every hook the agent fires. One place, one type: `AgentHooks`. */
export function createHooks() {
  return Object.freeze({
    /** Series waterfall over the outgoing `auth_response`; add optional fields (PROTOCOL.md allows them). */
    beforeAuth: new AsyncSeriesWaterfallHook<[AuthResponseFrame]>(['frame']),
    /** Series, after `auth_ok` and before `capabilities` is sent. */
    afterAuth: new AsyncSeriesHook<[SessionInfo]>(['session']),
    /** Series waterfall over the advertised model entries, with named stages (`CapabilityStage`). */
    onCapabilities: new AsyncSeriesWaterfallHook<[CapabilityModel[]]>(['models']),
    /** Series bail: the first tap that returns a `JobHandle` serves the job; `undefined` passes. */
    onJob: new AsyncSeriesBailHook<[JobContext], JobHandle | undefined>(['job']),
    /** Sync, every time a backend probe changes the servable model set. */
    onDiscovery: new SyncHook<[readonly BackendModel[]]>(['models']),
    /**
     * Series, once the agent has started (plugins applied, identity loaded, engines probed) and before it
     * dials the coordinator: where a feature opens its files, sockets and timers. Every tap runs, each
     * isolated: one that fails is logged and the agent serves on.
     */
    onStart: new AsyncSeriesHook<[StartInfo]>(['start']),
    /** Every tap runs, each under a timeout; failures are collected, not thrown. */
    onClose: new AsyncSeriesHook<[CloseInfo]>(['close']),
    /** Sync, isolated observers of the observation stream (`AgentEvent`): taps return at once, queue any I/O. */
    onEvent: new SyncHook<[AgentEvent]>(['event']),
  });
}

export type AgentHooks = ReturnType<typeof createHooks>;

/** `tap` always; `tapPromise` where the hook is async. Never `call`, `promise` or `intercept`. */
type TapOnly<H> = H extends { tapPromise: infer P; tap: infer T }
  ? { readonly tap: T; readonly tapPromise: P }
  : H extends { tap: infer T }
    ? { readonly tap: T }
    : never;

/** The view plugins get: `tap` and `tapPromise` only; firing hooks is core's job. */
export type PluginHooks = { readonly [K in keyof AgentHooks]: TapOnly<AgentHooks[K]> };

type AnyFn = (...args: unknown[]) => unknown;
type TapOptions = string | (Partial<Tap> & { name: string });

function tagError(err: unknown, plugin: string, hook: string): UsepodError {
  if (err instanceof UsepodError && err.plugin) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new UsepodError(
    'USEPOD_PLUGIN_HOOK_FAILED',
    `plugin "${plugin}" failed in hook "${hook}": ${message}`,
    {
      cause: err,
      plugin,
      hook,
    },
  );
}

/**
 * A tap-only view for one plugin. Every callback is wrapped so an error it
 * throws names the plugin and the hook.
 */
export function pluginView(hooks: AgentHooks, plugin: string): PluginHooks {
  const view: Record<string, unknown> = {};
  for (const [name, hook] of Object.entries(hooks) as [string, { tap: AnyFn; tapPromise?: AnyFn }][]) {
    const wrapSync =
      (fn: AnyFn) =>
      (...args: unknown[]) => {
        try {
          return fn(...args);
        } catch (err) {
          throw tagError(err, plugin, name);
        }
      };
    const wrapAsync =
      (fn: AnyFn) =>
      async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (err) {
          throw tagError(err, plugin, name);
        }
      };
    const opts = (o: TapOptions) => (typeof o === 'string' ? { name: o } : o);
    view[name] = Object.freeze({
      tap: (o: TapOptions, fn: AnyFn) => hook.tap({ ...opts(o), plugin } as never, wrapSync(fn)),
      tapPromise: hook.tapPromise
        ? (o: TapOptions, fn: AnyFn) => hook.tapPromise!({ ...opts(o), plugin } as never, wrapAsync(fn))
        : undefined,
    });
  }
  return Object.freeze(view) as PluginHooks;
}

export interface CloseFailure {
  tap: string;
  error: Error;
}

/**
 * Tells every `onEvent` tap, each on its own: a tap that throws is reported and the others still hear.
 * Taps must return at once (queue any I/O): events are told from wherever they happen.
 */
export function runEventHooks(hooks: AgentHooks, event: AgentEvent): CloseFailure[] {
  const failures: CloseFailure[] = [];
  for (const tap of hooks.onEvent.taps) {
    try {
      (tap.fn as (e: AgentEvent) => unknown)(event);
    } catch (err) {
      failures.push({ tap: tap.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return failures;
}

/**
 * Runs every `onStart` tap, each on its own and bounded by `timeoutMs`, and returns what failed. A tap
 * still running then goes on by itself: one that never finishes (a plugin's bug, a disk that does not
 * answer) must not keep the agent from serving for good.
 */
export function runStartHooks(
  hooks: AgentHooks,
  info: StartInfo,
  timeoutMs: number,
): Promise<CloseFailure[]> {
  return runBounded(hooks.onStart.taps, info, timeoutMs, (ms) => `did not finish in ${ms} ms`);
}

/** Runs every `onClose` tap, each bounded by `timeoutMs`, and returns what failed. */
export function runCloseHooks(
  hooks: AgentHooks,
  info: CloseInfo,
  timeoutMs: number,
): Promise<CloseFailure[]> {
  return runBounded(hooks.onClose.taps, info, timeoutMs, (ms) => `timed out after ${ms} ms`);
}

/** Each tap in turn, awaited at most `timeoutMs`; a late failure is dropped, never unhandled. */
async function runBounded<I>(
  taps: readonly { name: string; fn: unknown }[],
  info: I,
  timeoutMs: number,
  late: (ms: number) => string,
): Promise<CloseFailure[]> {
  const failures: CloseFailure[] = [];
  for (const tap of taps) {
    try {
      const done = await within(() => (tap.fn as (i: I) => unknown)(info), timeoutMs);
      if (done === TIMED_OUT) failures.push({ tap: tap.name, error: new Error(late(timeoutMs)) });
    } catch (err) {
      failures.push({ tap: tap.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return failures;
}
