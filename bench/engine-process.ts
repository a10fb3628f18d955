import { BatchEngine } from './engine.js';

/** The batching engine in a process of its own, for client measurements. */
const engine = new BatchEngine();
const url = await engine.start();
engine.setRate(Number(process.argv[2] ?? 100));
engine.run();
process.send!({ url });
process.on('disconnect', () => process.exit(0));
