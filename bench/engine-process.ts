import { BatchEngine } from './engine.js';
import { recordGcs } from './gc-log.js';

/**
 * The batching engine in a process of its own, driven over IPC, so that neither path of the
 * benchmark shares a process with it: the direct client and the agent are equally far from it.
 */
type Msg =
  | { id: number; cmd: 'gcs' }
  | { id: number; cmd: 'rate'; v: number }
  | { id: number; cmd: 'reset' }
  | { id: number; cmd: 'counters' };

// Garbage collections, for lane A's slow-round report.
const gcs = recordGcs();

const engine = new BatchEngine();
const url = await engine.start();
engine.setRate(Number(process.argv[2] ?? 100));
engine.run();
engine.onAbort = (at) => process.send!({ event: 'abort', at });
process.on('message', (m: Msg) => {
  if (m.cmd === 'gcs') {
    process.send!({ id: m.id, gcs });
    return;
  }
  if (m.cmd === 'rate') engine.setRate(m.v);
  else if (m.cmd === 'reset') engine.resetCounters();
  process.send!({
    id: m.id,
    written: engine.written,
    ceiling: engine.ceiling(),
    active: engine.active,
    pausedStreams: engine.pausedStreams,
  });
});
process.on('disconnect', () => process.exit(0));
process.send!({ url });
