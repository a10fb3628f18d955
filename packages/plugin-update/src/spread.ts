import { createHash } from 'node:crypto';

/**
 * How long this machine waits after a release's minimum age, within `spreadMs`: a stable hash of the
 * provider id, so a fleet updates over the spread and not at once, and each machine always waits the same.
 */
export function spreadDelay(providerId: string | undefined, spreadMs: number): number {
  if (spreadMs <= 0) return 0;
  const h = createHash('sha256')
    .update(providerId ?? 'no-provider-id')
    .digest();
  return Math.floor((h.readUInt32BE(0) / 0x1_0000_0000) * spreadMs);
}

/** When a release published at `publishedAt` may be installed here. */
export function eligibleAt(
  publishedAt: number,
  o: { minAgeMs: number; spreadMs: number; providerId: string | undefined },
): number {
  return publishedAt + o.minAgeMs + spreadDelay(o.providerId, o.spreadMs);
}
