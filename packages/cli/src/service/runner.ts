import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { replaceFileSync } from '@usepod-agent/core/cli';
import type { Step } from './plan.js';

/** Carries out planned steps. The real one touches the system; the dry one only says what it would do. */
export interface SystemRunner {
  exists(path: string): boolean;
  apply(step: Step): Promise<number>;
}

function commandLine(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (/[\s"'$|&;<>]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

export function describeStep(step: Step): string {
  const mode = 'mode' in step ? ` (mode ${step.mode.toString(8).padStart(4, '0')})` : '';
  if (step.kind === 'write') return `write ${step.path}${mode}: ${step.why}`;
  if (step.kind === 'copy') return `copy ${step.from} to ${step.path}${mode}: ${step.why}`;
  if (step.kind === 'remove') return `remove ${step.path}: ${step.why}`;
  const input = step.input ? `${commandLine(step.input.cmd, step.input.args)} | ` : '';
  return `run ${input}${commandLine(step.cmd, step.args)}   # ${step.why}`;
}

export class RealRunner implements SystemRunner {
  exists(path: string): boolean {
    return existsSync(path);
  }

  async apply(step: Step): Promise<number> {
    // A file is written beside its path and renamed over it: a link there is replaced, never followed
    // (root would otherwise write, then chown, wherever it points).
    if (step.kind === 'write') {
      replaceFileSync(step.path, step.content, step.mode);
      return 0;
    }
    if (step.kind === 'copy') {
      // The source was read as an identity just before (a small regular file: readIdentity).
      replaceFileSync(step.path, readFileSync(step.from, 'utf8'), step.mode);
      return 0;
    }
    if (step.kind === 'remove') {
      await rm(step.path, { force: true });
      return 0;
    }
    const out = step.interactive ? 'inherit' : ['ignore', 'inherit', 'inherit'];
    if (!step.input) return exitOf(spawn(step.cmd, step.args, { stdio: out as 'inherit' }));
    // `input | cmd`, failing when either does (a shell's pipe reports only the last).
    const input = spawn(step.input.cmd, step.input.args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const child = spawn(step.cmd, step.args, { stdio: [input.stdout, 'inherit', 'inherit'] });
    child.on('error', () => input.kill());
    const [fed, code] = await Promise.all([exitOf(input), exitOf(child)]);
    return fed || code;
  }
}

function exitOf(child: ReturnType<typeof spawn>): Promise<number> {
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => resolve(code ?? 1));
  });
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
    if (step.kind !== 'write') return 0;
    // A file only its owner may read (the config: the enrollment code, alert tokens) is not printed: a
    // dry run's output is what gets pasted into a ticket or kept in a CI log.
    if ((step.mode & 0o077) === 0) {
      this.#write(`    | (${step.content.length} characters, not shown: only its owner may read it)`);
      return 0;
    }
    for (const line of step.content.trimEnd().split('\n')) this.#write(`    | ${line}`);
    return 0;
  }
}
