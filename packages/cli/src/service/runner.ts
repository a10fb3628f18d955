import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { writeFileAtomic } from '@usepod-agent/core/cli';
import type { Step } from './plan.js';

/** Carries out planned steps. The real one touches the system; the dry one only says what it would do. */
export interface SystemRunner {
  exists(path: string): boolean;
  apply(step: Step): Promise<number>;
}

export function describeStep(step: Step): string {
  if (step.kind === 'write')
    return `write ${step.path} (mode ${step.mode.toString(8).padStart(4, '0')}): ${step.why}`;
  if (step.kind === 'remove') return `remove ${step.path}: ${step.why}`;
  const line = [step.cmd, ...step.args].map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  return `run ${line}   # ${step.why}`;
}

export class RealRunner implements SystemRunner {
  exists(path: string): boolean {
    return existsSync(path);
  }

  async apply(step: Step): Promise<number> {
    if (step.kind === 'write') {
      await writeFileAtomic(step.path, step.content, step.mode);
      return 0;
    }
    if (step.kind === 'remove') {
      await rm(step.path, { force: true });
      return 0;
    }
    return new Promise((resolve, reject) => {
      const child = spawn(step.cmd, step.args, {
        stdio: step.interactive ? 'inherit' : ['ignore', 'inherit', 'inherit'],
      });
      child.on('error', reject);
      child.on('exit', (code) => resolve(code ?? 1));
    });
  }
}

export class DryRunner implements SystemRunner {
  readonly #write: (line: string) => void;
  constructor(
    write: (line: string) => void,
    private readonly present: (path: string) => boolean = existsSync,
  ) {
    this.#write = write;
  }

  exists(path: string): boolean {
    return this.present(path);
  }

  async apply(step: Step): Promise<number> {
    this.#write(`would ${describeStep(step)}`);
    if (step.kind === 'write') {
      for (const line of step.content.trimEnd().split('\n')) this.#write(`    | ${line}`);
    }
    return 0;
  }
}
