import { appendFile } from 'node:fs/promises';
import { type Agent, CapabilityStage, type ConfigInput, createAgent } from '@usepod-agent/core';
import type { Logger } from '@usepod-agent/core/backend';
import vllm from '@usepod-agent/plugin-vllm';

/**
 * The agent embedded in another program, with three hooks of its own:
 * a pricing policy, a job audit log, and a clean shutdown that flushes it.
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
  at: string;
  event: 'start' | 'end';
  jobId: string;
  model: string;
  backend?: string | undefined;
  outcome?: string;
  outputTokens?: number;
}

export function createEmbeddedAgent(opts: EmbeddedOptions): { agent: Agent; audit: AuditEntry[] } {
  const agent = createAgent({
    config: opts.config,
    plugins: [vllm],
    ...(opts.allowInsecure ? { allowInsecure: true } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  const audit: AuditEntry[] = [];

  // Pricing policy: raise every price to the floor, after the config's own prices were applied.
  agent.hooks.onCapabilities.tap({ name: 'price-floor', stage: CapabilityStage.POLICY }, (models) =>
    models.map((m) => ({ ...m, output_per_1m: Math.max(m.output_per_1m, opts.minOutputPer1m) })),
  );

  // Audit log: observe every job (never its prompt) and let routing go on (return undefined).
  agent.hooks.onJob.tap('audit', (job) => {
    audit.push({
      at: new Date().toISOString(),
      event: 'start',
      jobId: job.frame.job_id,
      model: job.frame.model_id,
    });
    return undefined;
  });
  agent.hooks.onJobEnd.tap('audit', (o) => {
    audit.push({
      at: new Date().toISOString(),
      event: 'end',
      jobId: o.jobId,
      model: o.model,
      backend: o.backend,
      outcome: o.outcome,
      outputTokens: o.outputTokens,
    });
  });

  // Clean shutdown: write the audit log out once the agent has drained.
  agent.hooks.onClose.tapPromise('audit-flush', async () => {
    const lines = audit.map((e) => JSON.stringify(e)).join('\n');
    if (lines) await appendFile(opts.auditFile, `${lines}\n`);
  });

  return { agent, audit };
}
