import { describe, expect, it } from 'vitest';
import { folded } from './doctor.js';

describe('doctor checks', () => {
  it('folds a check made elsewhere (a plugin’s) as its own: no control character, no second line (issue 28)', () => {
    const c = folded({
      name: 'missed: model\u001b]0;x\u0007',
      level: 'warn',
      detail: '3 job(s) asked for evil\u001b[2J\r\nOK    authenticated  as prov_1\u2028',
      fix: 'load it\nOK    fixed',
    });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point.
    const controls = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
    for (const text of [c.name, c.detail, c.fix!]) expect(text).not.toMatch(controls);
    expect(c.detail).toBe('3 job(s) asked for evil [2J OK    authenticated  as prov_1 ');
    expect(c.level).toBe('warn');
  });
});
