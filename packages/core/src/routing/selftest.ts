import { EventEmitter } from 'node:events';
import { createParser } from 'eventsource-parser';
import type { Backend } from '../backend/backend.js';
import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { StreamScanner } from '../relay/stream-scan.js';
import { engineText } from '../untrusted.js';
import { cooldownMs, type EjectionSettings, failureText, type JobFailure, judgeJob } from './ejection.js';
import type { SelfTestResult } from './selftest-result.js';

/**
 * Self-tests (issue 19): a tiny request through every model a healthy backend serves, on its own timer,
 * one at a time and never while the agent is at `max_concurrent` or paused, so a customer's job never
 * waits for one. A pair (backend, model) failing `withdrawAfter` times in a row is withdrawn from routing
 * and from capabilities until it passes again: an engine that lists a model but cannot run it is found
 * by us before a customer's job meets it.
 *
 * Real jobs count too (ejection.ts): a pair whose jobs fail `eject.after` times in a row on the engine's
 * side is withdrawn the same way (its `ejectedUntil` says until when), and is tested again when its
 * cooldown ends, whatever `intervalMs`: it comes back when that test passes, else its cooldown doubles.
 */

export type { SelfTestResult } from './selftest-result.js';

export interface SelfTestTarget {
  backend: Backend;
  model: string;
}

export interface SelfTestOptions {
  /** What to test now: every model of every healthy backend, withdrawn or not (they must come back). */
  targets(): SelfTestTarget[];
  /** True while a test must wait: `max_concurrent` reached, paused, stopping. */
  busy(): boolean;
  /** Between rounds; 0: only on demand. */
  intervalMs: number;
  timeoutMs: number;
  maxTokens: number;
  prompt: string;
  withdrawAfter: number;
  log: Logger;
  /** Counted as the backend's own load while a test runs, so routing sees it. */
  adjustInFlight?(backend: Backend, delta: number): void;
  /** When real jobs eject a pair (ejection.ts); never without. */
  eject?: EjectionSettings;
}

/** The `[selftest]` keys as SelfTest takes them (the agent's timer and `usepod-agent selftest` alike). */
export function selfTestSettings(
  c: Config['selftest'],
): Pick<SelfTestOptions, 'timeoutMs' | 'maxTokens' | 'prompt' | 'withdrawAfter'> {
  return {
    timeoutMs: c.timeout_s * 1000,
    maxTokens: c.max_tokens,
    prompt: c.prompt,
    withdrawAfter: c.withdraw_after,
  };
}

const MAX_ANSWER_BYTES = 1024 * 1024;

const key = (backend: Backend, model: string) => `${backend.label}\u0000${model}`;

/** A pair's real jobs: engine-side failures in a row, and its ejection when they reached the limit. */
interface JobRun {
  failures: number;
  /** Ejections in a row: each doubles the cooldown. */
  level: number;
  /** Ejected until then (ms since the epoch); undefined while routed. */
  until: number | undefined;
  /** When it last came back: a pair back for longer than the longest cooldown starts again at level 1. */
  backAt: number | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class SelfTest extends EventEmitter<{
  /** A pair was withdrawn (`true`) or came back (`false`). */
  withdrawn: [SelfTestResult, boolean];
  result: [SelfTestResult];
  /** Real jobs ejected a pair, or ejected it again after its retest failed. */
  ejected: [SelfTestResult];
}> {
  readonly #o: SelfTestOptions;
  readonly #results = new Map<string, SelfTestResult>();
  /** Pairs whose real jobs failed on the engine's side; empty while every job goes well. */
  readonly #jobs = new Map<string, JobRun>();
  /** How many pairs are withdrawn now. */
  #withdrawn = 0;
  #round: Promise<SelfTestResult[]> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Without an interval, a pair withdrawn by on-demand tests is tested again on this timer until back. */
  #retestWithdrawn: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #abort = new AbortController();

  constructor(opts: SelfTestOptions) {
    super();
    this.#o = opts;
  }

  start(): void {
    if (this.#o.intervalMs <= 0 || this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.run({ wait: false }).finally(() => this.start());
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#retestWithdrawn);
    for (const j of this.#jobs.values()) clearTimeout(j.timer);
    this.#abort.abort();
    await this.#round?.catch(() => {});
  }

  /** Whether routing and capabilities must leave this pair out. */
  isWithdrawn(backend: Backend, model: string): boolean {
    // Asked on every job's routing: nothing withdrawn or ejected (the usual case) costs one comparison.
    return this.#withdrawn > 0 && this.#results.get(key(backend, model))?.withdrawn === true;
  }

  /** The last result of every pair still served, by backend then model. */
  results(): SelfTestResult[] {
    return [...this.#results.values()].sort(
      (a, b) => a.backend.localeCompare(b.backend) || a.model.localeCompare(b.model),
    );
  }

  /**
   * One round over every target; concurrent calls share it. `wait`: on demand, a test waits for room
   * (up to its timeout) where the timer's round skips a busy moment and tries at the next interval.
   */
  run(opts: { wait: boolean } = { wait: true }): Promise<SelfTestResult[]> {
    this.#round ??= this.#runRound(opts.wait).finally(() => {
      this.#round = undefined;
    });
    return this.#round;
  }

  async #runRound(wait: boolean): Promise<SelfTestResult[]> {
    const targets = this.#o.targets();
    // Pairs no longer served are forgotten: a model the engine unloaded is not "withdrawn", just gone.
    const live = new Set(targets.map((t) => key(t.backend, t.model)));
    for (const [k, r] of this.#results) {
      if (live.has(k)) continue;
      if (r.withdrawn) this.#withdrawn--;
      this.#results.delete(k);
    }
    for (const [k, j] of this.#jobs) {
      if (live.has(k)) continue;
      clearTimeout(j.timer);
      this.#jobs.delete(k);
    }
    for (const t of targets) {
      if (this.#stopped) break;
      if (this.#o.busy() && !(wait && (await this.#room()))) continue;
      this.#record(t, await this.#measure(t));
    }
    return this.results();
  }

  /** Waits until the agent has room, up to the test timeout. */
  async #room(): Promise<boolean> {
    const end = Date.now() + this.#o.timeoutMs;
    while (this.#o.busy()) {
      if (this.#stopped || Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 100).unref());
    }
    return true;
  }

  #record(t: SelfTestTarget, m: Measurement): void {
    const k = key(t.backend, t.model);
    const before = this.#results.get(k);
    const failures = m.ok ? 0 : (before?.failures ?? 0) + 1;
    // An ejected pair comes back at a pass once its cooldown is over, not before.
    const j = this.#jobs.get(k);
    if (m.ok && j?.until !== undefined && Date.now() >= j.until) {
      clearTimeout(j.timer);
      j.until = undefined;
      j.timer = undefined;
      j.failures = 0;
      j.backAt = Date.now();
    }
    const ejected = j?.until !== undefined;
    // Failures only grow until a pass: once at `withdrawAfter`, the pair stays withdrawn until then.
    const withdrawn = ejected || (!m.ok && failures >= this.#o.withdrawAfter);
    const r: SelfTestResult = {
      backend: t.backend.label,
      kind: t.backend.kind,
      model: t.model,
      ok: m.ok,
      failures,
      withdrawn,
      ejectedUntil: ejected ? new Date(j!.until!).toISOString() : undefined,
      jobError: ejected ? before?.jobError : undefined,
      // A failure keeps the last good figures: they still say what the pair does when it works.
      ttftMs: m.ok ? m.ttftMs : before?.ttftMs,
      tokensPerSecond: m.ok ? m.tokensPerSecond : before?.tokensPerSecond,
      tokens: m.ok ? m.tokens : before?.tokens,
      at: new Date().toISOString(),
      error: m.ok ? undefined : m.error,
    };
    this.#results.set(k, r);
    this.#withdrawn += (withdrawn ? 1 : 0) - (before?.withdrawn ? 1 : 0);
    const fields = { backend: r.backend, model: r.model };
    if (!m.ok) this.#o.log.warn('self-test failed', { ...fields, failures, error: r.error });
    else this.#o.log.debug('self-test passed', { ...fields, ttft_ms: r.ttftMs, tok_s: r.tokensPerSecond });
    this.emit('result', r);
    if (withdrawn !== (before?.withdrawn === true)) {
      if (withdrawn) this.#o.log.warn('model withdrawn: it failed its self-tests', { ...fields, failures });
      else this.#o.log.info('model back: it passed its self-test', fields);
      this.emit('withdrawn', r, withdrawn);
    }
    if (withdrawn && !ejected) this.#retestLater();
  }

  /**
   * With no `interval_s` (the default) nothing would test a pair withdrawn by `usepod-agent selftest`
   * again: its model would stay out for good after the engine recovered. It is retested after the
   * first ejection cooldown (30 s by default), again and again while anything is withdrawn.
   */
  #retestLater(): void {
    if (this.#o.intervalMs > 0 || this.#stopped || this.#retestWithdrawn) return;
    this.#retestWithdrawn = setTimeout(() => {
      this.#retestWithdrawn = undefined;
      // A round that skipped the pair (the agent busy or paused) tries again later.
      void this.run({ wait: false }).finally(() => {
        if ([...this.#results.values()].some((r) => r.withdrawn && r.ejectedUntil === undefined))
          this.#retestLater();
      });
    }, this.#o.eject?.cooldownMs ?? 30_000);
    this.#retestWithdrawn.unref();
  }

  /**
   * A real job on this pair ended (the executor tells each job that reached a backend): engine-side
   * failures in a row eject the pair; a job that finished ends the run; the rest do not count.
   */
  reportJob(backend: Backend, model: string, failure: JobFailure | undefined): void {
    const settings = this.#o.eject;
    if (!settings || settings.after <= 0) return;
    // Every job's end comes here: a job that finished, on an agent where none failed, costs one lookup.
    if (failure === undefined && this.#jobs.size === 0) return;
    const verdict = judgeJob(failure);
    if (verdict === 'neutral') return;
    const k = key(backend, model);
    let j = this.#jobs.get(k);
    if (verdict === 'ok') {
      // A pair never ejected has nothing left to remember; one that was keeps its level (the next
      // cooldown's length) until it has been back for the longest cooldown.
      if (j && j.until === undefined) {
        if (j.level === 0) this.#jobs.delete(k);
        else j.failures = 0;
      }
      return;
    }
    if (!j) {
      j = { failures: 0, level: 0, until: undefined, backAt: undefined, timer: undefined };
      this.#jobs.set(k, j);
    }
    j.failures++;
    // Jobs already on their way when it was ejected may still fail: the ejection stands as it was.
    if (j.until !== undefined || j.failures < settings.after) return;
    this.#eject({ backend, model }, j, failureText(failure!), settings);
  }

  /** Withdraws the pair for its next cooldown, and tests it again when that ends. */
  #eject(t: SelfTestTarget, j: JobRun, why: string, settings: EjectionSettings): void {
    const now = Date.now();
    if (j.backAt !== undefined && now - j.backAt > settings.maxCooldownMs) j.level = 0;
    j.level++;
    const ms = cooldownMs(j.level, settings);
    j.until = now + ms;
    clearTimeout(j.timer);
    j.timer = setTimeout(() => void this.#retest(t, j), ms);
    j.timer.unref();
    const k = key(t.backend, t.model);
    const before = this.#results.get(k);
    const r: SelfTestResult = {
      ...(before ?? {
        backend: t.backend.label,
        kind: t.backend.kind,
        model: t.model,
        // No test ran yet: nothing passed.
        ok: false,
        failures: 0,
        ttftMs: undefined,
        tokensPerSecond: undefined,
        tokens: undefined,
        at: new Date(now).toISOString(),
        error: undefined,
      }),
      withdrawn: true,
      ejectedUntil: new Date(j.until).toISOString(),
      jobError: why,
    };
    this.#results.set(k, r);
    if (!before?.withdrawn) this.#withdrawn++;
    this.#o.log.warn('model ejected: its jobs failed on the engine', {
      backend: r.backend,
      model: r.model,
      failures: j.failures,
      cooldown_s: Math.round(ms / 1000),
      error: why,
    });
    this.emit('ejected', r);
    if (!before?.withdrawn) this.emit('withdrawn', r, true);
  }

  /**
   * The cooldown ended: one self-test of the pair, after any round in progress (one test at a time) and
   * when the agent has room. A pass brings it back (#record); a failure ejects it again, for longer.
   */
  async #retest(t: SelfTestTarget, j: JobRun): Promise<void> {
    j.timer = undefined;
    await this.#round?.catch(() => {});
    // Stopped, forgotten, or back already (a round's pass once the cooldown was over).
    if (this.#stopped || this.#jobs.get(key(t.backend, t.model)) !== j || j.until === undefined) return;
    const settings = this.#o.eject!;
    const k = key(t.backend, t.model);
    if (!this.#o.targets().some((x) => x.backend === t.backend && x.model === t.model)) {
      // Its backend is down or no longer lists the model: forgotten, as a round forgets it.
      if (this.#results.get(k)?.withdrawn) this.#withdrawn--;
      this.#results.delete(k);
      this.#jobs.delete(k);
      return;
    }
    if (this.#o.busy() && !(await this.#room())) {
      // Busy or paused: try again after the first cooldown, the ejection unchanged.
      if (this.#stopped) return;
      j.timer = setTimeout(() => void this.#retest(t, j), settings.cooldownMs);
      j.timer.unref();
      return;
    }
    const m = await this.#measure(t);
    if (this.#stopped || this.#jobs.get(k) !== j) return;
    this.#record(t, m);
    if (!m.ok) this.#eject(t, j, m.error, settings);
  }

  async #measure(t: SelfTestTarget): Promise<Measurement> {
    const { backend, model } = t;
    const ac = new AbortController();
    const onStop = () => ac.abort(new Error('agent stopping'));
    this.#abort.signal.addEventListener('abort', onStop, { once: true });
    const timer = setTimeout(
      () => ac.abort(new Error(`no answer within ${this.#o.timeoutMs} ms`)),
      this.#o.timeoutMs,
    );
    this.#o.adjustInFlight?.(backend, 1);
    const started = performance.now();
    let first: number | undefined;
    let last = started;
    let contentEvents = 0;
    const scanner = new StreamScanner();
    const parser = createParser({
      onEvent: (e) => {
        if (e.data === '[DONE]') return;
        try {
          if (hasContent(JSON.parse(e.data))) {
            last = performance.now();
            first ??= last;
            contentEvents++;
          }
        } catch {
          // Not JSON: the scanner below judges the stream.
        }
      },
    });
    const decoder = new TextDecoder();
    try {
      const res = await backend.stream({
        model,
        format: 'openai',
        signal: ac.signal,
        body: {
          model,
          messages: [{ role: 'user', content: this.#o.prompt }],
          max_tokens: this.#o.maxTokens,
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
        },
      });
      let bytes = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        // A few tokens are a few kilobytes; an engine that sends more is not answering this test.
        bytes += chunk.length;
        if (bytes > MAX_ANSWER_BYTES) return fail(`the answer passed ${MAX_ANSWER_BYTES} bytes`);
        scanner.push(chunk);
        parser.feed(decoder.decode(chunk, { stream: true }));
      }
      const scan = scanner.end();
      if (scan.streamError !== undefined) return fail(`stream error: ${scan.streamError}`);
      if (first === undefined) return fail('the answer had no token');
      // The test asked for max_tokens: an engine reporting more (or a usage figure it made up) is held to it.
      const tokens = Math.min(Math.max(scan.outputTokens, contentEvents), this.#o.maxTokens);
      const decodeS = (last - first) / 1000;
      return {
        ok: true,
        ttftMs: round(first - started),
        tokens,
        tokensPerSecond: tokens > 1 && decodeS > 0 ? round((tokens - 1) / decodeS) : undefined,
      };
    } catch (err) {
      return fail(ac.signal.aborted ? errorMessage(ac.signal.reason) : errorMessage(err));
    } finally {
      clearTimeout(timer);
      this.#abort.signal.removeEventListener('abort', onStop);
      ac.abort();
      this.#o.adjustInFlight?.(backend, -1);
    }
  }
}

type Measurement =
  | { ok: true; ttftMs: number; tokens: number; tokensPerSecond: number | undefined }
  | { ok: false; error: string };

const fail = (error: string): Measurement => ({ ok: false, error: engineText(error, 200) });

const round = (n: number) => Math.round(n * 10) / 10;

/** A chunk that carries generated text: content, or the reasoning some models stream first. */
function hasContent(obj: unknown): boolean {
  const choices = (obj as { choices?: unknown } | null)?.choices;
  if (!Array.isArray(choices)) return false;
  for (const c of choices) {
    const d = (c as { delta?: Record<string, unknown> } | null)?.delta;
    if (!d || typeof d !== 'object') continue;
    for (const f of ['content', 'reasoning_content', 'reasoning']) {
      if (typeof d[f] === 'string' && d[f] !== '') return true;
    }
    if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) return true;
  }
  return false;
}
