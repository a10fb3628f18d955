import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isUsepodError, jobErrorCodeOf, UsepodError } from './errors.js';

describe('error table', () => {
  it('is mirrored, code for code, in docs/errors.md', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\|\s*`(USEPOD_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented).toEqual(Object.keys(ERROR_CODES));
  });

  it('has every code raised somewhere in the packages (no code sits in the table unused)', () => {
    const packages = new URL('../../', import.meta.url).pathname;
    let sources = '';
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const p = join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('errors.ts'))
          sources += readFileSync(p, 'utf8');
      }
    };
    for (const pkg of readdirSync(packages))
      if (statSync(join(packages, pkg, 'src')).isDirectory()) walk(join(packages, pkg, 'src'));
    const unraised = Object.keys(ERROR_CODES).filter(
      // Raised as `new UsepodError('CODE', ...)`, or by a subclass's `super('CODE', ...)` (the ledger's).
      (code) => !new RegExp(`(UsepodError|super)\\(\\s*'${code}'`).test(sources),
    );
    expect(unraised).toEqual([]);
  });

  it('maps backend errors to the wire codes of PROTOCOL.md 5.4', () => {
    expect(jobErrorCodeOf(new UsepodError('USEPOD_BACKEND_UNREACHABLE', 'x'))).toBe('backend_unreachable');
    expect(jobErrorCodeOf(new UsepodError('USEPOD_BACKEND_AUTH', 'x'))).toBe('auth_rejected_by_backend');
    expect(jobErrorCodeOf(new UsepodError('USEPOD_BACKEND_MODEL_NOT_FOUND', 'x'))).toBe('model_not_loaded');
    expect(jobErrorCodeOf(new UsepodError('USEPOD_BACKEND_TIMEOUT', 'x'))).toBe('backend_timeout');
    expect(jobErrorCodeOf(new UsepodError('USEPOD_BACKEND_HTTP', 'x'))).toBe('internal');
    expect(jobErrorCodeOf(new Error('x'))).toBe('internal');
  });

  it('recognises errors from another copy of core by their brand', () => {
    const foreign = Object.assign(new Error('x'), {
      code: 'USEPOD_BACKEND_AUTH',
      [Symbol.for('usepod-agent.error')]: true,
    });
    expect(isUsepodError(foreign, 'USEPOD_BACKEND_AUTH')).toBe(true);
    expect(isUsepodError(new Error('x'))).toBe(false);
  });
});
