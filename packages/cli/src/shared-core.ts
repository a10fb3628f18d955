import { register } from 'node:module';

let shared = false;

/**
 * Makes every later import of `@usepod-agent/core` resolve to the CLI's own copy (shared-core-hook.ts).
 * Called before the first plugin is imported; the hook thread it starts costs nothing to commands that
 * load no plugin.
 */
export function shareCore(): void {
  if (shared) return;
  shared = true;
  register('./shared-core-hook.js', import.meta.url, { data: { parentURL: import.meta.url } });
}
