import type { AgentEvent, SelfTestResult } from '@usepod-agent/core';
import vllmPlugin from '@usepod-agent/plugin-vllm';
import { VllmEmulator } from '@usepod-agent/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { render } from '../packages/cli/src/commands/status.js';
import { selftestChecksOf } from '../packages/cli/src/doctor.js';
import { localTime } from '../packages/cli/src/when.js';
import { hello, type Rig, rig } from './helpers.js';

/**
 * Real failures count, not only self-tests (issue 28, point 8), over real sockets: two emulated vLLMs
 * serve one model; the first starts answering 500 mid-run. After `eject_after` (3) failures in a row no
 * job reaches it, the jobs go to the healthy one, an event, a metric, `/status` and the self-test results
 * say so; when its cooldown ends it is tested (with `[selftest] interval_s` 0), ejected again for twice as
 * long while it still fails, and back once a test passes. The model leaves the capabilities only when
 * no other engine serves it. A client's 4xx, a cancel or a deadline never eject a pair.
 */
const MODEL = 'Qwen/Qwen3-14B';
const PROMPT = 'self-test, count to five';
const OOM = '{"error":{"message":"CUDA error: out of memory","type":"InternalServerError","code":500}}';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

interface Pair {
  r: Rig;
  a: VllmEmulator;
  b: VllmEmulator;
  events: AgentEvent[];
  /** Customers' jobs (not self-tests) that reached an engine. */
  jobsAt(e: VllmEmulator): number;
  /** Resolves at the next event of this type told to `onEvent`. */
  nextEvent(type: AgentEvent['type'], ms?: number): Promise<AgentEvent>;
}

async function twoEngines(selftest: Record<string, unknown> = {}): Promise<Pair> {
  const a = await new VllmEmulator().start();
  const b = await new VllmEmulator().start();
  const events: AgentEvent[] = [];
  const waiters: ((e: AgentEvent) => void)[] = [];
  const rr = await rig({
    engine: a,
    extraEngines: [b],
    plugins: [
      vllmPlugin,
      {
        name: 'events',
        apiVersion: 1,
        apply(hooks) {
          hooks.onEvent.tap('record', (e) => {
            events.push(e);
            for (const w of waiters.splice(0)) w(e);
          });
        },
      },
    ],
    config: {
      backends: [
        { kind: 'vllm', url: a.url, name: 'a' },
        { kind: 'vllm', url: b.url, name: 'b' },
      ],
      selftest: { prompt: PROMPT, eject_after: 3, eject_cooldown_s: 1, ...selftest },
      observability: { prometheus_addr: '127.0.0.1:0' },
    },
  });
  r = rr;
  const nextEvent = (type: AgentEvent['type'], ms = 10_000) =>
    new Promise<AgentEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} event in time`)), ms);
      const on = (e: AgentEvent) => {
        if (e.type !== type) return void waiters.push(on);
        clearTimeout(timer);
        resolve(e);
      };
      waiters.push(on);
    });
  return {
    r: rr,
    a,
    b,
    events,
    jobsAt: (e) =>
      e.requests.items.filter((q) => q.path.endsWith('/chat/completions') && !q.rawBody.includes(PROMPT))
        .length,
    nextEvent,
  };
}

async function metrics(rr: Rig): Promise<string> {
  const a = rr.t.agent.statusAddress!;
  return (await fetch(`http://${a.host}:${a.port}/metrics`)).text();
}

function nextResult(rr: Rig, pred: (x: SelfTestResult) => boolean, ms = 10_000): Promise<SelfTestResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no such self-test result in time')), ms);
    const on = ({ result: x }: { result: SelfTestResult }) => {
      if (!pred(x)) return;
      clearTimeout(timer);
      rr.t.agent.off('selftest', on);
      resolve(x);
    };
    rr.t.agent.on('selftest', on);
  });
}

const run = (p: Pair) => p.r.session.dispatch({ model_id: MODEL, request: hello }).done();

describe('ejection after real jobs fail', () => {
  it('takes a failing engine out after the third failure, sends its jobs to the other, and brings it back', async () => {
    // Everything between the ejection and the doctor check below runs inside the first cooldown, on the
    // wall clock: 3 s, not 1 s, so that seven jobs and a /metrics read on a loaded VM still fit in it
    // (past it A is retested, ejected again, and the figures of the first ejection are gone).
    const p = await twoEngines({ eject_cooldown_s: 3 });
    const { a, b } = p;
    // Both idle, ranked the same: the first configured engine takes every job.
    for (let i = 0; i < 3; i++) expect(await run(p)).toMatchObject({ type: 'job_done' });
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([3, 0]);

    // Mid-run, A starts failing: three jobs meet it, then none does.
    a.always({ kind: 'status', status: 500, body: OOM });
    const ejected = p.nextEvent('model_withdrawn');
    // Its test when the cooldown ends, listened for now: nothing tests A before then.
    const retested = nextResult(p.r, (x) => x.backend === 'a');
    const ends: string[] = [];
    for (let i = 0; i < 10; i++) ends.push(String((await run(p)).type));
    expect(ends).toEqual([...Array(3).fill('job_error'), ...Array(7).fill('job_done')]);
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([6, 7]);
    expect(await ejected).toMatchObject({
      type: 'model_withdrawn',
      cause: 'jobs',
      backend: 'a',
      model: MODEL,
      detail: expect.stringMatching(/500: CUDA error: out of memory/),
      until: expect.any(String),
    });

    // Said in the self-test results (what doctor reads), /status and /metrics; B still serves the model.
    const st = p.r.t.agent.selftestResults().find((x) => x.backend === 'a')!;
    expect(st).toMatchObject({ withdrawn: true, jobError: expect.stringMatching(/out of memory/) });
    expect(Date.parse(st.ejectedUntil!)).toBeGreaterThan(Date.now());
    const s = p.r.t.agent.status();
    const modelA = s.backends.find((x) => x.label === 'a')!.models[0]!;
    expect(modelA.selftest).toMatchObject({ withdrawn: true, ejected_until: st.ejectedUntil });
    expect(s.backends.find((x) => x.label === 'b')!.models[0]!.selftest).toBeNull();
    expect(s.models.map((m) => m.model_id)).toEqual([MODEL]);
    expect(render(s, 'here')).toContain(
      `EJECTED: its jobs failed, tested again at ${localTime(st.ejectedUntil!)}`,
    );
    const m1 = await metrics(p.r);
    expect(m1).toMatch(/usepod_agent_model_ejected\{backend="a",model="Qwen\/Qwen3-14B"\} 1/);
    expect(m1).toMatch(/usepod_agent_ejections_total\{backend="a"\} 1/);
    // What doctor says of these results (it reads them from the running agent).
    expect(selftestChecksOf(p.r.t.agent.selftestResults())).toEqual([
      {
        name: 'ejected a',
        level: 'warn',
        detail: `${MODEL} is ejected: its jobs failed on the engine (backend answered 500: CUDA error: out of memory); tested again at ${st.ejectedUntil}`,
        fix: expect.stringMatching(/other engines/),
      },
    ]);

    // The cooldown ends: one self-test of A (self-tests are off on their own timer), still failing.
    const retest = await retested;
    expect(retest).toMatchObject({ ok: false, withdrawn: true });
    const again = p.r.t.agent.selftestResults().find((x) => x.backend === 'a')!;
    // Ejected again, for twice as long (6 s).
    expect(Date.parse(again.ejectedUntil!) - Date.parse(retest.at)).toBeGreaterThanOrEqual(5_900);
    expect(await metrics(p.r)).toMatch(/usepod_agent_ejections_total\{backend="a"\} 2/);
    for (let i = 0; i < 3; i++) expect(await run(p)).toMatchObject({ type: 'job_done' });
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([6, 10]);

    // A recovers: its next test, once the cooldown is over, passes and it serves again.
    a.reset();
    const back = await p.nextEvent('model_back');
    expect(back).toMatchObject({ backend: 'a', model: MODEL });
    expect(p.jobsAt(a)).toBe(6);
    expect(p.r.t.agent.selftestResults().find((x) => x.backend === 'a')).toMatchObject({
      ok: true,
      withdrawn: false,
      ejectedUntil: undefined,
    });
    expect(await metrics(p.r)).toMatch(/usepod_agent_model_ejected\{backend="a",model="Qwen\/Qwen3-14B"\} 0/);
    expect(selftestChecksOf(p.r.t.agent.selftestResults())).toMatchObject([
      { name: 'self-tests', level: 'ok' },
    ]);
    expect(await run(p)).toMatchObject({ type: 'job_done' });
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([7, 10]);
    expect(p.events.filter((e) => e.type === 'model_withdrawn')).toHaveLength(1);
  }, 60_000);

  it("never ejects for a client's bad request, a cancel or the coordinator's deadline", async () => {
    const p = await twoEngines();
    const { a, b } = p;
    // A bad request: the engine says so with a 400, as often as the client sends it.
    a.always({ kind: 'status', status: 400, body: '{"error":{"message":"max_tokens must be at least 1"}}' });
    for (let i = 0; i < 5; i++) expect(await run(p)).toMatchObject({ type: 'job_error' });
    a.reset();
    // The deadline passes while A thinks.
    a.always({ kind: 'hang' });
    for (let i = 0; i < 4; i++) {
      const end = await p.r.session.dispatch({ model_id: MODEL, request: hello, deadline_ms: 100 }).done();
      expect(end).toMatchObject({ type: 'job_error', error_code: 'backend_timeout' });
    }
    // The customer cancels.
    for (let i = 0; i < 4; i++) {
      const job = p.r.session.dispatch({ model_id: MODEL, request: hello });
      await a.requests.next((q) => q.path.endsWith('/chat/completions'));
      p.r.session.cancel(job.jobId);
      await a.aborted.next();
      // The slot is free again before the next job is sent, so it goes to A too. A deadline that says
      // so, not polls that ran out silently (the next job then went to B, failing a count further on).
      for (const end = Date.now() + 10_000; p.r.t.agent.status().jobs.in_flight > 0; ) {
        if (Date.now() > end) throw new Error('the cancelled job never left its slot');
        await new Promise((res) => setTimeout(res, 5));
      }
    }
    a.reset();
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([13, 0]);
    expect(await run(p)).toMatchObject({ type: 'job_done' });
    expect([p.jobsAt(a), p.jobsAt(b)]).toEqual([14, 0]);
    expect(p.events.filter((e) => e.type === 'model_withdrawn')).toEqual([]);
    expect(p.r.t.agent.selftestResults()).toEqual([]);
    expect(await metrics(p.r)).not.toMatch(/usepod_agent_ejections_total\{/);
  });

  it("leaves the capabilities when the ejected engine was the model's only one", async () => {
    r = await rig({ config: { selftest: { prompt: PROMPT, eject_after: 3 } } });
    const engine = r.engine;
    engine.always({ kind: 'status', status: 500, body: OOM });
    const caps = r.session.nextFrame('capabilities');
    for (let i = 0; i < 3; i++) {
      expect(await r.session.dispatch({ model_id: MODEL, request: hello }).done()).toMatchObject({
        type: 'job_error',
      });
    }
    expect((await caps).models).toEqual([]);
    // A job the coordinator sent before it heard: refused here, never sent to the engine.
    const late = await r.session.dispatch({ model_id: MODEL, request: hello }).done();
    expect(late).toMatchObject({ type: 'job_error', error_code: 'model_not_loaded' });
    expect(engine.requests.items.filter((q) => q.path.endsWith('/chat/completions'))).toHaveLength(3);
  });

  it('counts streams the engine cuts short, after some tokens were relayed', async () => {
    const p = await twoEngines();
    p.a.always({ kind: 'drop', afterTokens: 2 });
    const ejected = p.nextEvent('model_withdrawn');
    const ends: string[] = [];
    for (let i = 0; i < 5; i++) ends.push(String((await run(p)).type));
    expect(ends).toEqual(['job_error', 'job_error', 'job_error', 'job_done', 'job_done']);
    expect([p.jobsAt(p.a), p.jobsAt(p.b)]).toEqual([3, 2]);
    expect(await ejected).toMatchObject({ cause: 'jobs', backend: 'a' });
  });

  it('a job that finishes ends the run of failures; eject_after = 0 turns ejection off', async () => {
    let p = await twoEngines();
    // Two failures, a success, two failures: never three in a row.
    for (const fail of [true, true, false, true, true]) {
      if (fail) p.a.behave({ kind: 'status', status: 500, body: OOM });
      await run(p);
    }
    expect([p.jobsAt(p.a), p.jobsAt(p.b)]).toEqual([5, 0]);
    await r!.close();
    r = undefined;

    p = await twoEngines({ eject_after: 0 });
    p.a.always({ kind: 'status', status: 500, body: OOM });
    for (let i = 0; i < 5; i++) expect(await run(p)).toMatchObject({ type: 'job_error' });
    expect([p.jobsAt(p.a), p.jobsAt(p.b)]).toEqual([5, 0]);
    expect(p.events.filter((e) => e.type === 'model_withdrawn')).toEqual([]);
  });
});
