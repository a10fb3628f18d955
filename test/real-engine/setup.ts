import { ensureLlamaServer, ensureSlowModel, ensureTinyModel } from '@usepod-agent/testkit/real';

/**
 * Prepares the real server and the models once for the tier. If Debian's sid archive cannot be reached the
 * tier fails with one line saying so (never a silent skip); USEPOD_SKIP_REAL_ENGINES=1 skips it on purpose.
 */
export default async function setup(): Promise<void> {
  if (process.env.USEPOD_SKIP_REAL_ENGINES === '1') {
    process.stdout.write('real-engine tier: skipped (USEPOD_SKIP_REAL_ENGINES=1)\n');
    return;
  }
  try {
    const bin = await ensureLlamaServer();
    const [tiny, slow] = await Promise.all([ensureTinyModel(), ensureSlowModel()]);
    process.stdout.write(`real-engine tier: ${bin}\n  models: ${tiny}, ${slow}\n`);
  } catch (err) {
    throw new Error(`real-engine tier: ${(err as Error).message}`);
  }
}
