#!/usr/bin/env node
import { execute, settings } from '@oclif/core';
import { normalizeArgv } from '../dist/argv.js';

// Always the compiled commands: with NODE_ENV=development or test (common on a developer's machine) oclif
// would otherwise look for TypeScript sources next to them and fail on the shipped src/*.ts.
settings.enableAutoTranspile = false;
// 0.3.x command lines: no command runs the agent; global flags may come before the command (argv.ts).
await execute({ dir: import.meta.url, args: normalizeArgv(process.argv.slice(2)) });
