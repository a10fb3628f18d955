import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The page's files: its own (assets/ in this package) and uPlot's, resolved from this package's
 * node_modules: nothing is fetched from a CDN, no request leaves the machine. Read once, kept.
 */
export interface AssetFile {
  path: string;
  type: string;
  /** Where the file is: this package's assets/, or a package's file. */
  from: { asset: string } | { module: string };
}

export class Assets {
  static readonly FILES: readonly AssetFile[] = [
    { path: '/', type: 'text/html; charset=utf-8', from: { asset: 'index.html' } },
    { path: '/dashboard.js', type: 'text/javascript; charset=utf-8', from: { asset: 'dashboard.js' } },
    { path: '/dashboard.css', type: 'text/css; charset=utf-8', from: { asset: 'dashboard.css' } },
    { path: '/favicon.svg', type: 'image/svg+xml', from: { asset: 'favicon.svg' } },
    {
      path: '/uplot.js',
      type: 'text/javascript; charset=utf-8',
      from: { module: 'uplot/dist/uPlot.iife.min.js' },
    },
    { path: '/uplot.css', type: 'text/css; charset=utf-8', from: { module: 'uplot/dist/uPlot.min.css' } },
  ];

  readonly #cache = new Map<string, Promise<Buffer>>();

  async serve(file: AssetFile, res: ServerResponse): Promise<void> {
    let body = this.#cache.get(file.path);
    if (!body) {
      body = readFile(where(file));
      this.#cache.set(file.path, body);
      body.catch(() => this.#cache.delete(file.path));
    }
    const bytes = await body;
    res.writeHead(200, { 'content-type': file.type, 'content-length': bytes.length });
    res.end(bytes);
  }
}

function where(file: AssetFile): string {
  if ('asset' in file.from) return fileURLToPath(new URL(`../assets/${file.from.asset}`, import.meta.url));
  return createRequire(import.meta.url).resolve(file.from.module);
}
