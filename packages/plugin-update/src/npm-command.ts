import { existsSync } from 'node:fs';
import { posix, win32 } from 'node:path';

/** How to start npm with some arguments: a file, its arguments, and whether they go to Windows verbatim. */
export interface NpmInvocation {
  file: string;
  args: string[];
  /** Windows: the command line is already quoted for cmd.exe (execFile's windowsVerbatimArguments). */
  verbatim: boolean;
}

/** Characters cmd.exe expands or splits on even inside quotes, or that end a line: never passed to it. */
const CMD_UNSAFE = /["%!^\r\n\0]/;

/**
 * The npm that belongs to `nodePath`. Unix: `npm` beside node (nvm and friends put it there), else on PATH.
 * Windows: npm is `npm.cmd` beside node.exe, and a .cmd runs only through cmd.exe, whose quoting is its
 * own; so npm's own script beside node.exe (`node_modules/npm/bin/npm-cli.js`, what npm.cmd runs) is
 * started with node directly, with no shell. Only when it is not there does cmd.exe run npm.cmd, with
 * every argument quoted and refused when it holds a character cmd.exe would expand (`%`, `!`, `^`, `"`).
 */
export function npmInvocation(
  args: readonly string[],
  platform: NodeJS.Platform = process.platform,
  nodePath: string = process.execPath,
  exists: (path: string) => boolean = existsSync,
): NpmInvocation {
  if (platform !== 'win32') {
    const beside = posix.join(posix.dirname(nodePath), 'npm');
    return { file: exists(beside) ? beside : 'npm', args: [...args], verbatim: false };
  }
  const home = win32.dirname(nodePath);
  const cli = win32.join(home, 'node_modules', 'npm', 'bin', 'npm-cli.js');
  if (exists(cli)) return { file: nodePath, args: [cli, ...args], verbatim: false };
  const cmd = win32.join(home, 'npm.cmd');
  const line = [exists(cmd) ? cmd : 'npm.cmd', ...args].map((a) => {
    if (CMD_UNSAFE.test(a)) throw new Error(`cannot pass ${JSON.stringify(a)} to npm.cmd through cmd.exe`);
    return `"${a}"`;
  });
  // /d: no AutoRun commands; /s: the outer quotes are stripped and the rest kept as it is.
  return { file: 'cmd.exe', args: ['/d', '/s', '/c', `"${line.join(' ')}"`], verbatim: true };
}
