/**
 * `job_chunk` frames are the hot path: one per upstream read. The frame is built as bytes, from a
 * per-job prefix and the base64 text written straight into it, with no object serialisation and no
 * intermediate string: the session hands the buffer to `ws` as a text frame, which masks it into one
 * write (a string costs ws a UTF-8 encode, a separate header and two writes; decision 0008).
 * `job_id` is a validated UUID, so it needs no JSON escaping; base64 and the prefix are ASCII.
 */
const SUFFIX_0 = 0x22; // "
const SUFFIX_1 = 0x7d; // }

export function chunkFramePrefix(jobId: string): Buffer {
  return Buffer.from(`{"type":"job_chunk","job_id":"${jobId}","data":"`, 'latin1');
}

export function chunkFrame(prefix: Buffer, data: Uint8Array): Buffer {
  const b64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
  const frame = Buffer.allocUnsafe(prefix.length + b64.length + 2);
  prefix.copy(frame, 0);
  const end = prefix.length + frame.write(b64, prefix.length, 'latin1');
  frame[end] = SUFFIX_0;
  frame[end + 1] = SUFFIX_1;
  return frame;
}
