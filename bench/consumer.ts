/**
 * The consumer both paths share: it receives a stream's bytes (directly from
 * the engine, or decoded from job_chunk frames), finds each event, and reads
 * the engine's emit time and sequence number to measure latency, gaps and loss.
 */
/** Epoch milliseconds with sub-millisecond precision: comparable across the bench's processes. */
export const clock = (): number => performance.timeOrigin + performance.now();

const T_RE = /"t":([0-9.]+),"s":(\d+)/;

export class StreamConsumer {
  #tail = '';
  nextSeq = 0;
  lost = 0;
  chunks = 0;
  firstByteAt: number | undefined;
  lastAt: number | undefined;
  /** Longest silence between two events, ms. */
  maxGapMs = 0;
  bytes = 0;
  readonly parts: Buffer[] = [];

  constructor(
    readonly latencies: number[],
    readonly keepBytes = false,
  ) {}

  push(buf: Buffer, now: number): void {
    if (this.firstByteAt === undefined) this.firstByteAt = now;
    this.bytes += buf.length;
    if (this.keepBytes) this.parts.push(buf);
    const text = this.#tail + buf.toString('latin1');
    let start = 0;
    let end = text.indexOf('\n\n', start);
    while (end !== -1) {
      const ev = text.slice(start, end);
      const m = T_RE.exec(ev);
      if (m) {
        const seq = Number(m[2]);
        if (seq !== this.nextSeq) this.lost += Math.max(0, seq - this.nextSeq);
        this.nextSeq = seq + 1;
        this.chunks++;
        this.latencies.push(now - Number(m[1]));
        if (this.lastAt !== undefined) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastAt);
        this.lastAt = now;
      }
      start = end + 2;
      end = text.indexOf('\n\n', start);
    }
    this.#tail = text.slice(start);
  }
}

export function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
