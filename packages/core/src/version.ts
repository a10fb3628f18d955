import { createRequire } from 'node:module';

/** This package's version; sent as `agent_version` (the successor of the 0.3.x agent line). */
export const AGENT_VERSION: string = (
  createRequire(import.meta.url)('../package.json') as { version: string }
).version;
