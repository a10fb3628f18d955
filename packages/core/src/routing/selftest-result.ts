/** One (backend, model) pair's last self-test, and whether it is out of routing (routing/selftest.ts). */
export interface SelfTestResult {
  backend: string;
  kind: string;
  model: string;
  /** The last test passed (false too for a pair ejected before any test ran). */
  ok: boolean;
  /** Failures in a row (0 after a pass). */
  failures: number;
  /** Out of routing and capabilities: failing its self-tests, or ejected after real jobs failed. */
  withdrawn: boolean;
  /** While ejected after real jobs failed: when it is tested again (ISO 8601). */
  ejectedUntil: string | undefined;
  /** Why it is ejected: its last real job's failure, or its retest's once one failed (engine text, bounded). */
  jobError: string | undefined;
  /** Time to the first token of the last passing test, ms. */
  ttftMs: number | undefined;
  /** Decode speed of the last passing test: tokens after the first over the time they took. */
  tokensPerSecond: number | undefined;
  /** Tokens the last passing test produced. */
  tokens: number | undefined;
  /** When the pair was last tested, ISO 8601. */
  at: string;
  /** Why the last test failed, bounded and redacted (engine text). */
  error: string | undefined;
}
