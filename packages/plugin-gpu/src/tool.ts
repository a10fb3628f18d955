import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { childEnv, engineText, killGroup } from '@usepod-agent/core';

/**
 * Runs a GPU tool (nvidia-smi, rocm-smi) with hard bounds (issue 28): a wedged driver makes nvidia-smi
 * hang and ignore SIGTERM, so after `timeoutMs` the tool's whole process group is SIGKILLed and the call
 * fails at once, without waiting for an exit that may never come; its pipes are destroyed so nothing
 * keeps the event loop or a file descriptor. Output past `maxBytes` is refused the same way. While a
 * killed tool has not exited (a process stuck in the driver ignores even SIGKILL), it is not started
 * again: polls would otherwise pile up stuck processes.
 */
export type RunTool = (cmd: string, args: readonly string[]) => Promise<string>;

export interface ToolOptions {
  /** The folders (PATH syntax) the tools are looked up in (default: the agent's PATH); they run with the agent's environment, less its secrets (core's `childEnv`). */
  path?: string | undefined;
  /** How long a tool may take (default 10 s). */
  timeoutMs?: number | undefined;
  /** The most a tool may print on stdout (default 1 MiB). */
  maxBytes?: number | undefined;
}

export const TOOL_TIMEOUT_MS = 10_000;
export const TOOL_MAX_BYTES = 1024 * 1024;
/** What of stderr is kept: its first line is the useful part ("couldn't communicate with the driver"). */
const MAX_STDERR = 4096;

export interface ToolRunner {
  run: RunTool;
  /** Kills whatever tool is still running (the agent stops). */
  stop(): void;
}

export function toolRunner(opts: ToolOptions = {}): ToolRunner {
  const timeoutMs = opts.timeoutMs ?? TOOL_TIMEOUT_MS;
  const maxBytes = opts.maxBytes ?? TOOL_MAX_BYTES;
  const where = (cmd: string): string | undefined => {
    if (opts.path === undefined) return cmd;
    for (const folder of opts.path.split(delimiter).filter(Boolean)) {
      try {
        accessSync(join(folder, cmd), constants.X_OK);
        return join(folder, cmd);
      } catch {}
    }
    return undefined;
  };
  const running = new Set<ChildProcess>();
  /** Tools killed that have not exited yet, by command. */
  const stuck = new Map<string, number>();

  const run: RunTool = (cmd, args) =>
    new Promise((resolve, reject) => {
      if ((stuck.get(cmd) ?? 0) > 0) {
        reject(toolError(cmd, `${cmd} killed at an earlier poll has not exited yet (stuck in the driver)`));
        return;
      }
      const file = where(cmd);
      if (file === undefined) {
        reject(toolError(cmd, `${cmd}: not found`, 'ENOENT'));
        return;
      }
      // detached: the tool leads its own group, so a shell wrapper's children die with it (killGroup).
      const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: childEnv() });
      running.add(child);
      const out: Buffer[] = [];
      let outBytes = 0;
      let err = '';
      let settled = false;
      const finish = (e: Error | undefined, stdout?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (e) reject(e);
        else resolve(stdout ?? '');
      };
      const abandon = (why: string, code: string) => {
        if (child.exitCode === null && child.signalCode === null) {
          stuck.set(cmd, (stuck.get(cmd) ?? 0) + 1);
          child.once('exit', () => stuck.set(cmd, Math.max(0, (stuck.get(cmd) ?? 1) - 1)));
        }
        killGroup(child);
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
        running.delete(child);
        finish(toolError(cmd, why, code));
      };
      const timer = setTimeout(
        () => abandon(`${cmd} did not answer in ${timeoutMs / 1000} s: killed`, 'ETIMEDOUT'),
        timeoutMs,
      );
      child.stdout!.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > maxBytes)
          return abandon(`${cmd} printed more than ${maxBytes} bytes: killed`, 'EMAXBUF');
        out.push(chunk);
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        if (err.length < MAX_STDERR) err += chunk.toString('utf8').slice(0, MAX_STDERR - err.length);
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        running.delete(child);
        finish(toolError(cmd, e.code === 'ENOENT' ? `${cmd}: not found` : `${cmd}: ${e.message}`, e.code));
      });
      child.on('close', (code, signal) => {
        running.delete(child);
        if (code === 0) return finish(undefined, Buffer.concat(out).toString('utf8'));
        // What the tool said is the useful part; it is the tool's text, folded before a log line.
        const said = err.trim().split('\n')[0] ?? '';
        const how = signal ? `killed by ${signal}` : `exit ${code}`;
        finish(toolError(cmd, said ? `${cmd}: ${said}` : `${cmd}: ${how}`, 'EEXIT'));
      });
    });

  return {
    run,
    stop() {
      for (const child of running) {
        killGroup(child);
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
      }
      running.clear();
    },
  };
}

export interface ToolError extends Error {
  code: string | undefined;
}

function toolError(cmd: string, message: string, code?: string): ToolError {
  return Object.assign(new Error(engineText(message, 300)), { code, tool: cmd }) as ToolError;
}
