/**
 * Energy per job (issue 31): the energy of the part of each interval between two polls that jobs ran in
 * is shared by those jobs, by the tokens each produced there (a job's output tokens spread evenly over its
 * duration, as the agent learns them only at its end; where no job in flight counted a token, by time).
 * Within an interval the power is taken as its average, and the interval is cut at every start and end
 * of its jobs: a job alone in part of it has all of that part, so a job starting mid-interval takes no
 * share of the time before it. An interval is shared
 * out once every job in it has ended, so a job's figure is known once the jobs that overlapped it have
 * ended too: `onJob` is told then. Time with no job is idle and charged to nobody. Bounded: at most
 * MAX_INTERVALS intervals wait for their jobs (the oldest is dropped, its jobs' figures then partial) and
 * MAX_JOBS jobs are followed.
 */
export const MAX_INTERVALS = 4096;
export const MAX_JOBS = 10_000;

export interface JobEnergy {
  jobId: string;
  wh: number;
  /** False when part of the job's time had no reading (a gap, a dropped interval). */
  complete: boolean;
}

interface Span {
  start: number;
  end: number | undefined;
  tokens: number;
}

interface Interval {
  t0: number;
  t1: number;
  /** All the interval's energy (its serving part is what its jobs' spans cover). */
  joules: number;
  /** Jobs in it that have not ended yet. */
  open: Set<string>;
  /** Every job in it. */
  jobs: Set<string>;
}

interface Followed {
  span: Span;
  joules: number;
  /** Intervals of this job not shared out yet. */
  waiting: number;
  /** Intervals it was in. */
  seen: number;
  partial: boolean;
}

export class JobAttribution {
  readonly #jobs = new Map<string, Followed>();
  readonly #intervals: Interval[] = [];
  readonly #onJob: (e: JobEnergy) => void;

  constructor(onJob: (e: JobEnergy) => void) {
    this.#onJob = onJob;
  }

  /** A job reached a backend at `at` (ms). */
  started(jobId: string, at: number): void {
    if (this.#jobs.size >= MAX_JOBS || this.#jobs.has(jobId)) return;
    this.#jobs.set(jobId, {
      span: { start: at, end: undefined, tokens: 0 },
      joules: 0,
      waiting: 0,
      seen: 0,
      partial: false,
    });
  }

  /** A job ended at `at` with its output tokens. */
  ended(jobId: string, at: number, tokens: number): void {
    const j = this.#jobs.get(jobId);
    if (!j) return;
    j.span.end = at;
    j.span.tokens = tokens;
    const done = this.#intervals.filter((iv) => iv.open.delete(jobId) && iv.open.size === 0);
    for (const iv of done) this.#share(iv);
    this.#settle(jobId);
  }

  /**
   * The energy of the interval `t0`..`t1` (ms) at a poll, `measured` false when a reading was missing in
   * it (its jobs' figures are then partial). The part of it some job ran in is serving (shared by those
   * jobs), the rest idle; returns the serving joules.
   */
  interval(t0: number, t1: number, joules: number, measured: boolean): number {
    // An empty or backward interval (the wall clock stepped back) holds no time: counting its jobs in
    // it would leave them waiting for a share-out that never comes, and their figures untold.
    if (t1 <= t0) return 0;
    const jobs = new Set<string>();
    const open = new Set<string>();
    const spans: [number, number][] = [];
    for (const [id, j] of this.#jobs) {
      if (j.span.start >= t1 || (j.span.end !== undefined && j.span.end <= t0)) continue;
      jobs.add(id);
      j.waiting++;
      j.seen++;
      if (!measured) j.partial = true;
      if (j.span.end === undefined) open.add(id);
      spans.push([Math.max(j.span.start, t0), Math.min(j.span.end ?? t1, t1)]);
    }
    if (jobs.size === 0) return 0;
    // Never more than the interval's energy: (j * d) / d can round one ulp above j (j = 25.5 J over
    // 85 ms), and the idle rest, j minus that, was then below 0: the ledger refuses such a period, and
    // its serving part was lost (the jobs' sum over the ledger's serving energy: 2-12% on a loaded VM).
    const serving = Math.min(joules, (joules * union(spans)) / (t1 - t0));
    const iv: Interval = { t0, t1, joules, open, jobs };
    if (open.size === 0) this.#share(iv);
    else {
      this.#intervals.push(iv);
      if (this.#intervals.length > MAX_INTERVALS) this.#drop(this.#intervals.shift()!);
    }
    for (const id of jobs) this.#settle(id);
    return serving;
  }

  #share(iv: Interval): void {
    const idx = this.#intervals.indexOf(iv);
    if (idx >= 0) this.#intervals.splice(idx, 1);
    const followed = [...iv.jobs].flatMap((id) => {
      const j = this.#jobs.get(id);
      if (!j) return [];
      const end = j.span.end ?? iv.t1;
      // Tokens per ms over the job's whole time: its tokens spread evenly.
      return [
        {
          j,
          from: Math.max(j.span.start, iv.t0),
          to: Math.min(end, iv.t1),
          rate: j.span.tokens / Math.max(1, end - j.span.start),
        },
      ];
    });
    const cuts = [...new Set([iv.t0, iv.t1, ...followed.flatMap((f) => [f.from, f.to])])]
      .filter((t) => t >= iv.t0 && t <= iv.t1)
      .sort((a, b) => a - b);
    const perMs = iv.joules / (iv.t1 - iv.t0);
    // Swept once in time order, each job on the pieces from its start to its end. A filter of every job
    // at every cut was quadratic: the 10,000 jobs a tool failing for an hour or two leaves waiting were
    // shared out in one 0.7 s block of the event loop when it answered again.
    const byFrom = [...followed].sort((x, y) => x.from - y.from);
    const on = new Set<(typeof followed)[number]>();
    let next = 0;
    for (let i = 1; i < cuts.length; i++) {
      const [a, b] = [cuts[i - 1]!, cuts[i]!];
      while (next < byFrom.length && byFrom[next]!.from <= a) on.add(byFrom[next++]!);
      for (const f of on) if (f.to <= a) on.delete(f);
      if (on.size === 0) continue;
      let rates = 0;
      for (const f of on) rates += f.rate;
      for (const f of on) f.j.joules += perMs * (b - a) * (rates > 0 ? f.rate / rates : 1 / on.size);
    }
    for (const f of followed) f.j.waiting--;
  }

  #drop(iv: Interval): void {
    for (const id of iv.jobs) {
      const j = this.#jobs.get(id);
      if (!j) continue;
      j.waiting--;
      j.partial = true;
    }
  }

  /** Tells a job's figure once it has ended and every interval of it has been shared out. */
  #settle(jobId: string): void {
    const j = this.#jobs.get(jobId);
    if (!j || j.span.end === undefined || j.waiting > 0) return;
    // Still inside the interval being measured: its last part comes with the next poll.
    if (!this.#covered(j)) return;
    this.#jobs.delete(jobId);
    this.#onJob({ jobId, wh: j.joules / 3600, complete: !j.partial && j.seen > 0 });
  }

  /** Whether the polls so far reach the job's end. */
  #covered(j: Followed): boolean {
    return this.#lastT1 >= (j.span.end ?? Number.POSITIVE_INFINITY);
  }

  #lastT1 = Number.NEGATIVE_INFINITY;

  /** Call after each poll's interval (even one with no reading): how far the polls reach. */
  polled(t1: number): void {
    this.#lastT1 = Math.max(this.#lastT1, t1);
    for (const id of [...this.#jobs.keys()]) this.#settle(id);
  }
}

/** Total length covered by spans (they may overlap). */
function union(spans: [number, number][]): number {
  let total = 0;
  let reach = Number.NEGATIVE_INFINITY;
  for (const [a, b] of spans.sort((x, y) => x[0] - y[0])) {
    const from = Math.max(a, reach);
    if (b > from) total += b - from;
    reach = Math.max(reach, b);
  }
  return total;
}
