import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/log.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { AgentEvent, AgentHooks } from '../plugins/hooks.js';
import type { CapabilitiesFrame } from '../protocol/frames.js';
import type { Session } from '../protocol/session.js';
import { advertise, type KindPriority, type ServedModel } from '../routing/capabilities.js';

/**
 * What the agent offers the coordinator now (PROTOCOL.md 3): the `capabilities` frame as it would be
 * sent, none while held, the last one sent, and its re-sending when what is served or the holds change.
 */
export class Offer {
  #last: CapabilitiesFrame | undefined;

  constructor(
    private readonly o: {
      config: Config;
      hooks: AgentHooks;
      metrics: AgentMetrics;
      log: Logger;
      priority: KindPriority;
      served(): ServedModel[];
      held(): boolean;
      session(): Session | undefined;
      tell(e: AgentEvent): void;
    },
  ) {}

  /** The models last offered (none while held). */
  get advertised(): CapabilitiesFrame['models'] {
    return this.#last?.models ?? [];
  }

  /** The frame as it would be sent now; nothing is offered while held (prices stay for jobs finishing). */
  async frame(): Promise<CapabilitiesFrame> {
    const frame = await advertise(this.o.config, this.o.served(), this.o.priority, this.o.hooks);
    if (this.o.held()) {
      this.#last = { ...frame, models: [] };
      return this.#last;
    }
    this.#last = frame;
    this.o.metrics.capabilities(frame.models);
    return frame;
  }

  /** Sends the frame again on the live session, if there is one. */
  async resend(): Promise<void> {
    const session = this.o.session();
    if (!session?.online) return;
    try {
      const frame = await this.frame();
      await session.sendCapabilities(frame);
      this.o.tell({ type: 'capabilities', frame });
    } catch (err) {
      this.o.log.error('capabilities update failed', { error: errorMessage(err) });
    }
  }
}
