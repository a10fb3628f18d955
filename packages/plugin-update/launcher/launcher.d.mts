/** Types of the launcher's helpers (launcher.mjs stays plain JavaScript: it runs with no build). */
export interface LauncherBad {
  version: string;
  reason: string;
  at: string;
}
export interface LauncherTrial {
  version: string;
  previous: string | null;
  timeoutMs: number;
}
/** The allowed V8 flags a release's package.json asks `run` to start with. */
export function nodeFlagsOf(packageRoot: string): string[];
/** Why another local user could change what the launcher runs in `dir`, or undefined. */
export function folderProblem(dir: string): string | undefined;
export function entryOf(versionDir: string, platform?: NodeJS.Platform): string;
export function linked(dir: string, name: 'current' | 'previous'): string | undefined;
export function point(
  dir: string,
  name: 'current' | 'previous',
  version: string,
  platform?: NodeJS.Platform,
): void;
export function recoverCurrent(
  dir: string,
  state: { trial: LauncherTrial | null; bad: LauncherBad[] },
  platform?: NodeJS.Platform,
): string | undefined;
export function rollBack(
  dir: string,
  state: { trial: LauncherTrial | null; bad: LauncherBad[] },
  reason: string,
  platform?: NodeJS.Platform,
): boolean;
export function beginSwitch(
  dir: string,
  state: { trial: LauncherTrial | null; bad: LauncherBad[] },
  sw: { version: string; timeoutMs: number },
  platform?: NodeJS.Platform,
): boolean;
