import type { Server } from 'node:net';
import { definePlugin, errorMessage } from '@usepod-agent/core';
import { z } from 'zod';
import { keepOwnerPause, restorePause, serveControl } from './control.js';

export {
  type ControlReply,
  type ControlRequest,
  control,
  controlPath,
  pauseFile,
  runningSelfTests,
} from './control.js';

/** `[control]`: the socket is on unless `socket = false` (an embedded agent with its own controls). */
export const controlSection = z.strictObject({ socket: z.boolean().default(true) });

/**
 * The owner's controls (issue 19) as a feature plugin (issue 27), on by default: a Unix socket beside the
 * key (`usepod-agent pause`, `resume`, `selftest`), and the owner's pause kept in `pause.json` so that it,
 * and only it, outlives a restart.
 */
export default definePlugin(() => ({
  name: '@usepod-agent/plugin-control',
  apiVersion: 1,
  sections: ['control'],
  apply(hooks, ctx) {
    const cfg = ctx.section('control', controlSection) ?? controlSection.parse({});
    if (!cfg.socket) return;
    let server: Server | undefined;
    hooks.onStart.tapPromise('control', async () => {
      // A pause from before a restart holds from the first connection on.
      await restorePause(ctx.agent, ctx.keyPath);
      server = await serveControl(ctx.agent, ctx.keyPath).catch((err: unknown) => {
        ctx.log.warn('pause and resume are unavailable: the control socket could not be opened', {
          error: errorMessage(err),
        });
        return undefined;
      });
    });
    // A timed pause that ends by itself forgets its file too.
    hooks.onEvent.tap('control', (e) => {
      if ((e.type === 'paused' || e.type === 'resumed') && e.by === 'owner') {
        void keepOwnerPause(ctx.agent, ctx.keyPath).catch(() => {});
      }
    });
    hooks.onClose.tap('control', () => {
      server?.close();
    });
  },
}));
