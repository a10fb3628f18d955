import { describe, expect, it } from 'vitest';
import { refuseNow } from './index.js';

/** `update --now` reaching the running agent: when it switches now, and the one line when it cannot. */
describe('refuseNow', () => {
  const ok = {
    version: '1.0.1',
    running: '1.0.0',
    underLauncher: true,
    container: false,
    installed: true,
    bad: undefined,
    switchingTo: undefined,
  };

  it('switches an installed, new, not-bad version under the launcher, and says yes again while it does', () => {
    expect(refuseNow(ok)).toBeUndefined();
    expect(refuseNow({ ...ok, switchingTo: '1.0.1' })).toBeUndefined();
  });

  it.each([
    [{ container: true }, 'it runs in a container: updates come with the image tag'],
    [{ underLauncher: false }, 'it does not run under the launcher (only the launcher can switch versions)'],
    [{ switchingTo: '1.0.2' }, 'it is already switching to 1.0.2'],
    [
      { onTrial: true },
      '1.0.0 is still on trial (its health is being judged): try again once the launcher kept it',
    ],
    [{ version: '1.0.0' }, 'it already runs 1.0.0'],
    [
      { bad: { version: '1.0.1', reason: 'exited with code 3 before it was healthy' } },
      '1.0.1 was rolled back on this machine: it exited with code 3 before it was healthy',
    ],
    [{ installed: false }, '1.0.1 is not installed beside it'],
  ])('%o: %s', (change, why) => {
    expect(refuseNow({ ...ok, ...change })).toBe(why);
  });
});
