import { hostname } from 'node:os';
import type { Logger } from '@usepod-agent/core';
import { readAlerts, safeTarget } from './config.js';
import { Delivery, type DeliveryResult, type DeliveryTiming } from './deliver.js';
import { text } from './text.js';

/**
 * One test alert to every `[[alerts]]` webhook, now, each in its own format (`usepod-agent alerts
 * test`): what an owner runs once after setting a webhook up, to see it reach their phone.
 */
export async function sendTestAlerts(
  raw: readonly unknown[],
  opts: {
    source?: string | undefined;
    locate?: (key: string) => string | undefined;
    log: Logger;
    timing?: DeliveryTiming;
    providerId?: string | undefined;
  },
): Promise<(DeliveryResult & { target: string })[]> {
  const host = hostname();
  return Promise.all(
    readAlerts(raw, opts.source, opts.locate).map(async (cfg) => {
      const delivery = new Delivery(cfg, opts.log, opts.timing);
      const result = await delivery.sendNow({
        event: 'test',
        severity: 'info',
        resolved: false,
        title: text`usepod-agent on ${host}: test alert`,
        message: text`If you can read this, alerts from this agent reach you. Nothing is wrong.`,
        host,
        providerId: opts.providerId,
        at: new Date().toISOString(),
        details: {},
      });
      await delivery.close(0);
      return { target: safeTarget(cfg), ...result };
    }),
  );
}
