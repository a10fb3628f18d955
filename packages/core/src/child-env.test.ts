import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { childEnv } from './child-env.js';
import { redactor } from './observability/redact.js';

describe('childEnv', () => {
  it('gives a child process the environment less the enrollment code and every variable holding a known secret', () => {
    redactor.add('sk-childenv-5f2a9c41');
    const env = {
      PATH: process.env.PATH,
      USEPOD_ENROLLMENT_CODE: 'POD-ENROLL-CHILD123',
      ENGINE_KEY: 'sk-childenv-5f2a9c41',
      AUTH_HEADER: 'Bearer sk-childenv-5f2a9c41',
      LANG: 'C.UTF-8',
    };
    const seen = execFileSync(process.execPath, ['-e', 'process.stdout.write(JSON.stringify(process.env))'], {
      env: childEnv({ EXTRA: '1' }, env),
    }).toString();
    const got = JSON.parse(seen) as Record<string, string>;
    expect(got.USEPOD_ENROLLMENT_CODE).toBeUndefined();
    expect(seen).not.toContain('sk-childenv-5f2a9c41');
    expect(got).toMatchObject({ PATH: process.env.PATH, LANG: 'C.UTF-8', EXTRA: '1' });
  });
});
