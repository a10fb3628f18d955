import { describe, expect, it } from 'vitest';
import { formatLine, formatValue } from './log.js';

describe('log lines', () => {
  it('quote, and so escape, any value holding a control character: a peer string never reaches the terminal raw', () => {
    expect(formatValue('plain-value')).toBe('plain-value');
    for (const evil of ['\u001b[2J\u001b[31mred', 'a\rb', 'x\u0085y', 'line\u2028break', 'bell\u0007']) {
      const out = formatValue(evil);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters that must not pass.
      expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
      expect(JSON.parse(out)).toBe(evil);
    }
    expect(formatLine('warn', 'session', 'ignored frame', { type: '\u001b]0;pwned\u0007' })).not.toContain(
      '\u001b',
    );
  });
});
