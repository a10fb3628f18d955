import type { Config } from '@oclif/core/interfaces';

/** Where `run` looks for backend plugins: the cwd, then the folder `plugins install` writes to. */
export function pluginSearchRoots(config: Config): string[] {
  return [process.cwd(), config.dataDir];
}
