/** Small terminal helpers: a box a person notices, and a spinner that degrades to one line off a TTY. */
export function box(lines: string[]): string {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '─'.repeat(width + 4);
  return [`┌${bar}┐`, ...lines.map((l) => `│  ${l.padEnd(width)}  │`), `└${bar}┘`].join('\n');
}

export interface Spinner {
  update(text: string): void;
  stop(final?: string): void;
}

export function spinner(stream: NodeJS.WriteStream, text: string): Spinner {
  if (!stream.isTTY) {
    stream.write(`${text}\n`);
    return { update() {}, stop: (final) => final && stream.write(`${final}\n`) };
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  let current = text;
  const draw = () => stream.write(`\r\x1b[2K${frames[i++ % frames.length]} ${current}`);
  draw();
  const timer = setInterval(draw, 100);
  return {
    update: (t) => {
      current = t;
    },
    stop: (final) => {
      clearInterval(timer);
      stream.write(`\r\x1b[2K${final ? `${final}\n` : ''}`);
    },
  };
}
