#!/usr/bin/env node
import { execute } from '@oclif/core';
import { normalizeArgv } from '../dist/argv.js';

// 0.3.x command lines: no command runs the agent; global flags may come before the command (argv.ts).
await execute({ dir: import.meta.url, args: normalizeArgv(process.argv.slice(2)) });
