import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LlamaModelSpec, SLOW_MODEL, TINY_MODEL, writeLlamaGguf } from './gguf.js';

/**
 * A real llama.cpp `llama-server` for tests: Debian sid's build prepared by `scripts/real-engine-setup.sh`
 * (nothing installed system-wide), serving a tiny random-weight model written on the spot. Plugin authors
 * can test against it the same way (docs/plugins.md).
 */

/** The cache folder of the server and the models (outside any work tree). */
export function realEngineCache(): string {
  return (
    process.env.USEPOD_ENGINE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'usepod-agent', 'llama-server')
  );
}

const SETUP = fileURLToPath(new URL('../../scripts/real-engine-setup.sh', import.meta.url));

/** Runs the setup script (idempotent: a second run reuses the cache); resolves with the server's path. */
export function ensureLlamaServer(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [SETUP],
      { env: { ...process.env, USEPOD_ENGINE_CACHE: realEngineCache() } },
      (err, out, errOut) => {
        if (err) reject(new Error(errOut.trim().split('\n').at(-1) || err.message));
        else resolve(out.trim().split('\n').at(-1)!);
      },
    );
  });
}

/** Writes a model into the cache once; resolves with its path. */
export async function ensureModel(spec: LlamaModelSpec): Promise<string> {
  const dir = join(realEngineCache(), 'models');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${spec.name}-${spec.seed ?? 14}.gguf`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    await writeLlamaGguf(tmp, spec);
    const { rename } = await import('node:fs/promises');
    await rename(tmp, path);
  }
  return path;
}

export const ensureTinyModel = () => ensureModel(TINY_MODEL);
export const ensureSlowModel = () => ensureModel(SLOW_MODEL);

/** A free TCP port on 127.0.0.1 (llama-server takes no port 0). */
export async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

export interface LlamaServerOptions {
  /** The GGUF file. */
  model: string;
  /** `--alias`: the model id it lists (else the file path). */
  alias?: string;
  /** `-c`: context of all slots together (each slot gets ctx / parallel). */
  ctx?: number;
  /** `-np`: slots. */
  parallel?: number;
  apiKey?: string;
  port?: number;
  /** `--slots` and `--metrics` are on unless set false. */
  slots?: boolean;
  metrics?: boolean;
  extraArgs?: string[];
  /** The binary (default: from `ensureLlamaServer()`). */
  binary?: string;
}

export class LlamaServer {
  readonly port: number;
  #opts: LlamaServerOptions & { binary: string };
  #child: ChildProcess | undefined;
  #log = '';

  private constructor(opts: LlamaServerOptions & { binary: string }, port: number) {
    this.#opts = opts;
    this.port = port;
  }

  /** Starts a server and waits until it serves (its `/health` answers 200). */
  static async start(opts: LlamaServerOptions): Promise<LlamaServer> {
    const binary = opts.binary ?? (await ensureLlamaServer());
    const server = new LlamaServer({ ...opts, binary }, opts.port ?? (await freePort()));
    await server.launch();
    await server.ready();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What the server printed (for failure messages). */
  get log(): string {
    return this.#log;
  }

  /**
   * Starts the process without waiting for it to serve, so a restart's loading window is observable;
   * `change` swaps options for this and later launches (a larger model lengthens the window).
   */
  async launch(change: Partial<LlamaServerOptions> = {}): Promise<void> {
    this.#opts = { ...this.#opts, ...change };
    const o = this.#opts;
    const args = [
      '-m',
      o.model,
      '--host',
      '127.0.0.1',
      '--port',
      String(this.port),
      '-c',
      String(o.ctx ?? 512),
      '-np',
      String(o.parallel ?? 2),
      '-t',
      '1',
      ...(o.alias ? ['--alias', o.alias] : []),
      ...(o.apiKey ? ['--api-key', o.apiKey] : []),
      ...(o.slots === false ? ['--no-slots'] : ['--slots']),
      ...(o.metrics === false ? [] : ['--metrics']),
      ...(o.extraArgs ?? []),
    ];
    this.#log = '';
    const child = spawn(o.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => {
      this.#log = (this.#log + d.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.#child = child;
  }

  /** Resolves once `/health` answers 200. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.#child?.exitCode !== null && this.#child?.exitCode !== undefined)
        throw new Error(`llama-server exited (${this.#child.exitCode}):\n${this.#log}`);
      const ok = await fetch(`${this.url}/health`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) return;
      if (Date.now() > end) throw new Error(`llama-server not ready within ${timeoutMs} ms:\n${this.#log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** SIGTERM (it shuts down cleanly), then waits for the exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops and starts again on the same port, without waiting for the model to load. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }
}
