/**
 * Alert text, kept as the plugin's own words and the values put into them. Every `${value}` in a
 * `text` template (a reason the coordinator gave, a model id, an engine's error, a hostname) is text
 * from outside: each format escapes it on its own terms, so only the plugin's own words can format a
 * message, make a link or mention anyone.
 */
export class Text {
  constructor(
    readonly words: readonly string[],
    readonly values: readonly (Text | string | number)[],
  ) {}

  /** The values escaped by `esc` (folded and clipped first), the words as written. */
  render(esc: (value: string) => string): string {
    let out = this.words[0] ?? '';
    this.values.forEach((v, i) => {
      out += (v instanceof Text ? v.render(esc) : esc(clipValue(fold(String(v))))) + this.words[i + 1];
    });
    return out;
  }

  /** Plain text: the values folded, nothing escaped (logs, JSON, ntfy). */
  toString(): string {
    return this.render((v) => v);
  }
}

/** `text\`backend ${name} is down\``: a nested `Text` keeps its own words. */
export function text(words: TemplateStringsArray, ...values: (Text | string | number)[]): Text {
  return new Text(words, values);
}

/** Longest value put into a message, in characters: a message stays within every chat's limit. */
export const MAX_VALUE = 300;

/**
 * Control characters (an ESC sequence, a newline that starts a Markdown heading), bidi overrides and
 * invisible characters become visible placeholders: C0 as their control pictures (`␛`), the rest `�`.
 */
export function fold(s: string): string {
  return s.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: these are what is folded.
    /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/g,
    (c) => {
      const code = c.charCodeAt(0);
      return code < 0x20 ? String.fromCharCode(0x2400 + code) : code === 0x7f ? '\u2421' : '\ufffd';
    },
  );
}

/** Clips to `max` characters (code points, so no surrogate pair is split), with `…`. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  const chars = Array.from(s);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : s;
}

function clipValue(s: string): string {
  return clip(s, MAX_VALUE);
}
