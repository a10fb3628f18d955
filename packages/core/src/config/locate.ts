/**
 * Where in a config file a mistake is, as `line:column` (1-based), so an operator's editor can jump there
 * (issue 17): parse errors carry their own position; a validation mistake names a key, found here by
 * walking the TOML file's tables and keys (the parser keeps no positions).
 */
export interface Position {
  line: number;
  column: number;
}

/** `file:line:column`, or `file` when the place is unknown. */
export function at(file: string, pos: Position | undefined): string {
  return pos ? `${file}:${pos.line}:${pos.column}` : file;
}

/** Line and column of a character offset. */
export function positionOf(text: string, offset: number): Position {
  const before = text.slice(0, Math.max(0, offset));
  const lines = before.split('\n');
  return { line: lines.length, column: lines.at(-1)!.length + 1 };
}

const HEADER = /^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$/;
const KEY = /^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=/;

function unquote(k: string): string {
  return k.startsWith('"') || k.startsWith("'") ? k.slice(1, -1) : k;
}

/**
 * The line of a key such as `backends[1].url` or `limits.max_concurrent` in a TOML text: the key's own
 * line when it is there, else its table's header (a key that is missing is missing from that table).
 */
export function locateTomlKey(text: string, keyPath: string): Position | undefined {
  const wanted = keyPath.replace(/\[(\d+)\]/g, '.$1');
  const counts = new Map<string, number>();
  let table = '';
  const found = new Map<string, Position>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const h = HEADER.exec(line);
    if (h) {
      const name = h[2]!
        .split('.')
        .map((p) => unquote(p.trim()))
        .join('.');
      if (h[1] === '[[') {
        const n = counts.get(name) ?? 0;
        counts.set(name, n + 1);
        table = `${name}.${n}`;
      } else {
        table = name;
      }
      if (!found.has(table)) found.set(table, { line: i + 1, column: 1 });
      return;
    }
    const k = KEY.exec(line);
    if (!k) return;
    const key = `${table ? `${table}.` : ''}${unquote(k[1]!)}`;
    if (!found.has(key)) found.set(key, { line: i + 1, column: line.indexOf(k[1]!) + 1 });
  });
  // The longest known prefix: the key itself, else the table it belongs in.
  for (let parts = wanted.split('.'); parts.length > 0; parts = parts.slice(0, -1)) {
    const hit = found.get(parts.join('.'));
    if (hit) return hit;
  }
  return undefined;
}
