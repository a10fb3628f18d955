/**
 * `job_chunk` frames are the hot path: one per upstream read. The frame is
 * built from a per-job prefix and the base64 text, with no object serialisation.
 * `job_id` is a validated UUID, so it needs no JSON escaping.
 */
export function chunkFramePrefix(jobId: string): string {
  return `{"type":"job_chunk","job_id":"${jobId}","data":"`;
}

export function chunkFrame(prefix: string, data: Uint8Array): string {
  return `${prefix}${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')}"}`;
}
