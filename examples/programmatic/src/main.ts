#!/usr/bin/env node
import { configureLogging, createLogger } from '@usepod-agent/core';
import { createEmbeddedAgent } from './index.js';

// node examples/programmatic/dist/main.js http://127.0.0.1:8000 [wss://coordinator/provider/connect]
const [engineUrl = 'http://127.0.0.1:8000', coordinatorUrl] = process.argv.slice(2);
configureLogging({ level: 'info' });
const { agent } = createEmbeddedAgent({
  config: {
    ...(coordinatorUrl ? { coordinator: { url: coordinatorUrl } } : {}),
    backends: [{ kind: 'vllm', url: engineUrl }],
  },
  minOutputPer1m: 400_000,
  auditFile: 'audit.jsonl',
  allowInsecure: coordinatorUrl?.startsWith('ws://') ?? false,
  logger: createLogger('embedded'),
});
await agent.start();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void agent.stop());
