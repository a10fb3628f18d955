import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { fileSink, formatLine, formatValue } from './log.js';

describe('log lines', () => {
  it('quote, and so escape, any value holding a control character: a peer string never reaches the terminal raw', () => {
    expect(formatValue('plain-value')).toBe('plain-value');
    const bidi = ['\u202eevil', 'a\u2066b\u2069', '\u200fx', '\u061cy'];
    for (const evil of [
      '\u001b[2J\u001b[31mred',
      'a\rb',
      'x\u0085y',
      'line\u2028break',
      'bell\u0007',
      ...bidi,
    ]) {
      const out = formatValue(evil);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters that must not pass.
      expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/);
      expect(JSON.parse(out)).toBe(evil);
    }
    expect(formatLine('warn', 'session', 'ignored frame', { type: '\u001b]0;pwned\u0007' })).not.toContain(
      '\u001b',
    );
  });
});

describe('the log file (USEPOD_AGENT_LOG_FILE)', () => {
  it('on a full disk each line goes to stderr, with one note, not one per line; then the file again', async () => {
    const seen: string[] = [];
    // /dev/full: every write fails ENOSPC, as on a full disk.
    const full = fileSink('/dev/full', (t) => seen.push(t));
    for (const n of [1, 2, 3]) full.write(`line ${n}`);
    expect(seen).toEqual([
      'line 1\n',
      '(log file /dev/full not written: ENOSPC: no space left on device, write; lines go here until it is)\n',
      'line 2\n',
      'line 3\n',
    ]);

    // The default sink, made at load from USEPOD_AGENT_LOG_FILE, falls back to stderr too.
    vi.resetModules();
    vi.stubEnv('USEPOD_AGENT_LOG_FILE', '/dev/full');
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((t) => {
      written.push(String(t));
      return true;
    });
    try {
      const fresh = await import('./log.js');
      fresh.configureLogging({ level: 'info' });
      fresh.createLogger('test').info('hello');
    } finally {
      spy.mockRestore();
      vi.unstubAllEnvs();
      vi.resetModules();
    }
    expect(written).toEqual([
      expect.stringMatching(/ INFO {2}test hello\n$/),
      '(log file /dev/full not written: ENOSPC: no space left on device, write; lines go here until it is)\n',
    ]);

    // A file that can be written again takes the lines again, said once.
    const dir = await mkdtemp(join(tmpdir(), 'usepod-log-'));
    try {
      const file = join(dir, 'later', 'agent.log');
      seen.length = 0;
      const sink = fileSink(file, (t) => seen.push(t));
      sink.write('a');
      await mkdir(join(dir, 'later'));
      sink.write('b');
      sink.write('c');
      expect(seen).toEqual([
        'a\n',
        `(log file ${file} not written: ENOENT: no such file or directory, open '${file}'; lines go here until it is)\n`,
        `(log file ${file} written again)\n`,
      ]);
      expect(await readFile(file, 'utf8')).toBe('b\nc\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
