import { channel } from 'node:diagnostics_channel';
import type { JobOutcome } from '../plugins/hooks.js';

/**
 * A job's milestones on `node:diagnostics_channel`, for APM tools and for the benchmark's trace
 * (bench/trace-hooks.mjs), which splits the agent's share of the time to first byte with them. Each
 * message is built only when the channel has a subscriber: unwatched, a milestone costs one check.
 * Subscribers run inside the job's path and must not throw or block.
 */
export const jobChannels = {
  /** `{ jobId, model, format }`: a job frame passed its checks and reached the executor. */
  received: channel('usepod:job:received'),
  /** `{ jobId, backend }`: the backend's `stream()` was called (the request is on its way). */
  request: channel('usepod:job:request'),
  /** `{ jobId, backend, contentType }`: the engine answered with a stream. */
  response: channel('usepod:job:response'),
  /** `{ jobId, bytes }`: the first chunk frame was handed to the coordinator's socket. */
  firstChunk: channel('usepod:job:first-chunk'),
  /** The job's `JobOutcome` (as `onJobEnd` gets it): it ended, one way or another. */
  end: channel('usepod:job:end'),
} as const;

export interface JobReceivedMessage {
  jobId: string;
  model: string;
  format: string;
}
export interface JobRequestMessage {
  jobId: string;
  backend: string;
}
export interface JobResponseMessage extends JobRequestMessage {
  contentType: string | undefined;
}
export interface JobFirstChunkMessage {
  jobId: string;
  bytes: number;
}
export type JobEndMessage = JobOutcome;
