import { type Agent, errorMessage, type Logger } from '@usepod-agent/core';

/** Serves until a signal: the first drains (`agent.stop()`), a second stops at once. */
export function untilSignalled(agent: Agent, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn('second signal: stopping now', { signal: sig });
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      log.info('stopping: draining jobs in flight', { signal: sig });
      agent.stop().then(resolve, (err: unknown) => {
        log.error('stop failed', { error: errorMessage(err) });
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
