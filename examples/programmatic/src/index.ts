import { appendFile } from 'node:fs/promises';
import { type Agent, CapabilityStage, type ConfigInput, createAgent, definePlugin } from '@usepod-agent/core';
import type { Logger } from '@usepod-agent/core/backend';
import vllm from '@usepod-agent/plugin-vllm';

/**
 * The agent embedded in another program: a pricing policy and a clean shutdown as a plugin of its own,
 * and a job audit log that observes the agent's event stream.
 */
export interface EmbeddedOptions {
  config: ConfigInput;
  /** No model is advertised below this output price (micro-USDC per 1M tokens). */
  minOutputPer1m: number;
  /** File the audit log is appended to on shutdown. */
  auditFile: string;
  allowInsecure?: boolean;
  logger?: Logger;
}

export interface AuditEntry {
  /** When the job arrived and when it ended (ISO). */
  receivedAt: string;
  endedAt: string;
  jobId: string;
  model: string;
  backend?: string | undefined;
  outcome: string;
  outputTokens: number;
}

export function createEmbeddedAgent(opts: EmbeddedOptions): { agent: Agent; audit: AuditEntry[] } {
  const audit: AuditEntry[] = [];

  // What changes the agent's behaviour is a plugin: a pricing policy (raise every price to the floor,
  // after the config's own prices) and a clean shutdown that writes the audit log out once drained.
  const policy = definePlugin(() => ({
    name: 'embedded-policy',
    apiVersion: 1,
    apply(hooks) {
      hooks.onCapabilities.tap({ name: 'price-floor', stage: CapabilityStage.POLICY }, (models) =>
        models.map((m) => ({ ...m, output_per_1m: Math.max(m.output_per_1m, opts.minOutputPer1m) })),
      );
      hooks.onClose.tapPromise('audit-flush', async () => {
        const lines = audit.map((e) => JSON.stringify(e)).join('\n');
        if (lines) await appendFile(opts.auditFile, `${lines}\n`);
      });
    },
  }));

  const agent = createAgent({
    config: opts.config,
    plugins: [vllm, policy],
    ...(opts.allowInsecure ? { allowInsecure: true } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });

  // What only watches listens to the observation stream: one event per job that ended (never its
  // prompt), which leaves routing and the executor's fast path alone.
  agent.on('job_end', ({ job }) => {
    const ended = Date.now();
    audit.push({
      receivedAt: new Date(ended - job.durationMs).toISOString(),
      endedAt: new Date(ended).toISOString(),
      jobId: job.jobId,
      model: job.model,
      backend: job.backend,
      outcome: job.outcome,
      outputTokens: job.outputTokens,
    });
  });

  return { agent, audit };
}
