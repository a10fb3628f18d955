import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CoordinatorSession, TestCoordinator, VllmEmulator } from '@usepod-agent/testkit';

/**
 * The CLI as an operator runs it, for the tests that need a real process: `usepod-agent ...` to its
 * end, and `usepod-agent run` in the background until it has authenticated and advertised.
 */
export const BIN = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** An operator's environment in a scratch home: PATH, and HOME and the XDG folders inside `dir`. */
export function homeEnv(dir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_DATA_HOME: join(dir, 'data'),
    ...extra,
  };
}

/** `usepod-agent <args>`, to its end. */
export function cli(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; uid?: number; gid?: number },
): Promise<CliResult> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, ...opts }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

export interface RunningAgent {
  child: ChildProcess;
  session: CoordinatorSession;
  /** The first capabilities frame. */
  caps: Record<string, unknown>;
  exited: Promise<number | null>;
  stderr(): string;
}

/**
 * `usepod-agent run --config cfg` in its own process; resolves once it authenticated at `coordinator`
 * and advertised, and (with `keyDir`) once its control socket beside the key is open.
 */
export async function runAgent(
  cfg: string,
  opts: {
    env: NodeJS.ProcessEnv;
    cwd: string;
    coordinator: TestCoordinator;
    keyDir?: string;
    children?: ChildProcess[];
  },
): Promise<RunningAgent> {
  const child = spawn(process.execPath, [BIN, 'run', '--config', cfg, '--allow-insecure'], {
    env: opts.env,
    cwd: opts.cwd,
  });
  opts.children?.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const session = await opts.coordinator.nextAuthenticated(20_000).catch((err) => {
    throw new Error(`${err}\n${stderr}`);
  });
  const caps = await session.capabilities();
  if (opts.keyDir) {
    for (let i = 0; i < 100 && !existsSync(join(opts.keyDir, 'agent.sock')); i++)
      await new Promise((r) => setTimeout(r, 50));
  }
  return { child, session, caps, exited, stderr: () => stderr };
}

/** A scratch home with a local coordinator and an emulated vLLM, for one test; `close()` ends it all. */
export interface Scratch {
  dir: string;
  coordinator: TestCoordinator;
  engine: VllmEmulator;
  /** Agents started by the test, killed at `close()`. */
  children: ChildProcess[];
  close(): Promise<void>;
}

export async function scratch(
  prefix: string,
  engine: ConstructorParameters<typeof VllmEmulator>[0] = {},
): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const coordinator = await TestCoordinator.start();
  const emulator = await new VllmEmulator(engine).start();
  const children: ChildProcess[] = [];
  return {
    dir,
    coordinator,
    engine: emulator,
    children,
    async close() {
      for (const c of children.splice(0)) c.kill('SIGKILL');
      await emulator.close();
      await coordinator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A wait for what a long-running process (a launcher and the agents it runs) prints: `said(text, from)`
 * resolves once `output()`, its stdout and stderr as the caller collects them, holds `text` after offset
 * `from`. Each chunk the process prints is the event; nothing polls. Rejects after `timeoutMs` with the
 * output's tail.
 */
export function saidBy(
  child: () => ChildProcess | undefined,
  output: () => string,
  timeoutMs: number,
): (text: string | RegExp, from?: number) => Promise<void> {
  return (text, from = 0) => {
    const has = () => {
      const tail = output().slice(from);
      return typeof text === 'string' ? tail.includes(text) : text.test(tail);
    };
    if (has()) return Promise.resolve();
    const streams = [child()?.stdout, child()?.stderr];
    return new Promise((resolve, reject) => {
      const stop = () => {
        clearTimeout(timer);
        for (const s of streams) s?.off('data', on);
      };
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`never said ${String(text)}:\n${output().slice(-6000)}`));
      }, timeoutMs);
      // Each stream's own listener that collects the output was added first: it has the chunk already.
      const on = () => {
        if (!has()) return;
        stop();
        resolve();
      };
      for (const s of streams) s?.on('data', on);
    });
  };
}
