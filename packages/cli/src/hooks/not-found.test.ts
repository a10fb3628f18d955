import { describe, expect, it } from 'vitest';
import { suggest } from './not-found.js';

describe('suggest', () => {
  const ids = ['run', 'status', 'service:install', 'service:uninstall', 'plugins:install', 'version'];

  it('finds the command a typo meant', () => {
    expect(suggest('stauts', ids)).toBe('status');
    expect(suggest('service:instal', ids)).toBe('service:install');
    expect(suggest('versoin', ids)).toBe('version');
  });

  it('does not guess when nothing is close', () => {
    expect(suggest('zzzqqq', ids)).toBeUndefined();
    expect(suggest('deploy', ids)).toBeUndefined();
    expect(suggest('x', [])).toBeUndefined();
  });
});
