/**
 * The command lines of 0.3.x (PROTOCOL.md 8a) in oclif's terms: `usepod-agent` alone runs the agent, and
 * the global flags (`-c/--config`, `--log-level`, `--allow-insecure`) may come before the command, which
 * oclif would read as the command's name. They are moved behind it; every command takes them.
 */
const WITH_VALUE = new Set(['-c', '--config', '--log-level']);
const BOOLEAN = new Set(['--allow-insecure']);
/** What oclif answers before any command: left where they are. */
const TOP_LEVEL = new Set(['--help', '-h', '--version', '-v', 'help']);

function isGlobal(token: string): boolean {
  if (WITH_VALUE.has(token) || BOOLEAN.has(token)) return true;
  const eq = token.indexOf('=');
  return eq > 0 && WITH_VALUE.has(token.slice(0, eq));
}

export function normalizeArgv(argv: readonly string[]): string[] {
  const globals: string[] = [];
  let i = 0;
  while (i < argv.length && isGlobal(argv[i]!)) {
    const token = argv[i]!;
    globals.push(token);
    i++;
    if (WITH_VALUE.has(token) && i < argv.length) globals.push(argv[i++]!);
  }
  const rest = argv.slice(i);
  const first = rest[0];
  // No command (nothing, or only flags): `run`, as in 0.3.x.
  const command = first === undefined || (first.startsWith('-') && !TOP_LEVEL.has(first)) ? ['run'] : [];
  const end = rest.indexOf('--');
  return end === -1
    ? [...command, ...rest, ...globals]
    : [...command, ...rest.slice(0, end), ...globals, ...rest.slice(end)];
}
