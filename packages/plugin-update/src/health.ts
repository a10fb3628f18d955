import type { AgentAccess, AgentEvent, Logger } from '@usepod-agent/core';
import { errorMessage } from '@usepod-agent/core';
import { type HealthReport, writeAtomic } from './state.js';

const MAX_MODELS = 1000;
const fold = (s: string) => s.replace(/[^\x20-\x7e]+/g, ' ').slice(0, 300);

/**
 * The version on trial proves itself to the launcher (launcher.mjs reads health.json): it authenticated,
 * advertised its models, and each advertised model passed one self-test, run as soon as it advertised.
 * A refusal or a failed self-test is written too, so the launcher rolls back at once instead of waiting.
 */
export class HealthReporter {
  readonly #report: HealthReport;
  #tested = false;
  #writing = Promise.resolve();

  constructor(
    readonly path: string,
    version: string,
    private readonly agent: AgentAccess,
    private readonly log: Logger,
  ) {
    // Keyed by model ids (an engine's): no prototype, so `__proto__` is a model like any other.
    const selftests: HealthReport['selftests'] = Object.create(null);
    this.#report = { version, pid: process.pid, authenticated: false, advertised: [], selftests };
  }

  onEvent(e: AgentEvent): void {
    if (e.type === 'connected') this.#report.authenticated = true;
    else if (e.type === 'auth_refused') this.#report.refused = fold(e.why);
    else if (e.type === 'capabilities') {
      const models = e.frame.models.slice(0, MAX_MODELS).map((m) => fold(m.model_id));
      if (models.length === 0) return;
      this.#report.advertised = [...new Set([...this.#report.advertised, ...models])];
      if (!this.#tested) {
        this.#tested = true;
        // One round now, not at the next interval (self-tests may be off in the config).
        this.agent.selftest().then(
          (results) => {
            for (const r of results) this.#record(r.model, r.ok);
            this.#write();
          },
          (err: unknown) =>
            this.log.warn('the update’s self-tests could not run', { error: errorMessage(err) }),
        );
      }
    } else if (e.type === 'selftest') this.#record(e.result.model, e.result.ok);
    else return;
    this.#write();
  }

  #record(model: string, ok: boolean): void {
    const m = fold(model);
    // A pass stands: the gate asks for one passing self-test per model; a later failure is routing's concern.
    if (this.#report.selftests[m] === 'pass') return;
    if (Object.keys(this.#report.selftests).length >= MAX_MODELS) return;
    this.#report.selftests[m] = ok ? 'pass' : 'fail';
  }

  #write(): void {
    const snapshot = structuredClone(this.#report);
    this.#writing = this.#writing
      .then(() => writeAtomic(this.path, snapshot))
      .catch((err: unknown) =>
        this.log.warn('health.json could not be written', { error: errorMessage(err) }),
      );
  }
}
