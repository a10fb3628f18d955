import { parseWindow } from '@usepod-agent/core';
import { describe, expect, it } from 'vitest';
import { updateSection } from './config.js';
import { type DecideInput, decide } from './decide.js';
import { stranded } from './ranges.js';
import { eligibleAt, spreadDelay } from './spread.js';

const HOUR = 3_600_000;
const base: DecideInput = {
  mode: 'auto',
  running: '0.4.0',
  release: { version: '0.4.1', publishedAt: Date.parse('2026-12-07T10:00:00Z') },
  bad: [],
  plugins: [],
  now: Date.parse('2026-12-07T20:00:00Z'),
  providerId: 'prov-a',
  minAgeMs: 2 * HOUR,
  spreadMs: 6 * HOUR,
  windows: [],
  timezone: 'UTC',
};

describe('spread', () => {
  it('two provider ids wait different delays, each always the same, within the spread', () => {
    const a = spreadDelay('prov-a', 6 * HOUR);
    const b = spreadDelay('prov-b', 6 * HOUR);
    expect(a).not.toBe(b);
    expect(spreadDelay('prov-a', 6 * HOUR)).toBe(a);
    for (const d of [a, b]) expect(d >= 0 && d < 6 * HOUR).toBe(true);
    expect(spreadDelay('prov-a', 0)).toBe(0);
    // A fleet of 200 spreads over the window rather than bunching (every sixth of it gets some).
    const sixths = new Set(Array.from({ length: 200 }, (_, i) => Math.floor(spreadDelay(`p${i}`, 6))));
    expect(sixths.size).toBe(6);
  });

  it('a release is eligible after its minimum age plus this machine’s delay', () => {
    const at = eligibleAt(1000, { minAgeMs: 50, spreadMs: 6 * HOUR, providerId: 'prov-a' });
    expect(at).toBe(1050 + spreadDelay('prov-a', 6 * HOUR));
  });
});

describe('decide', () => {
  it('installs a newer release once it is old enough, past the spread, in the window', () => {
    expect(decide(base)).toEqual({ do: 'install', version: '0.4.1' });
  });

  it('nothing when the channel has nothing newer', () => {
    expect(decide({ ...base, running: '0.4.1' }).do).toBe('nothing');
    expect(decide({ ...base, running: '0.5.0' }).do).toBe('nothing');
  });

  it('a version recorded bad is never installed again', () => {
    expect(decide({ ...base, bad: ['0.4.1'] })).toEqual({
      do: 'nothing',
      why: '0.4.1 failed its health check on this machine and is not installed again',
    });
  });

  it('waits for the minimum age and this machine’s spread delay', () => {
    const d = decide({ ...base, now: base.release.publishedAt + HOUR });
    expect(d).toMatchObject({ do: 'wait', version: '0.4.1' });
    if (d.do === 'wait') expect(d.until).toBe(eligibleAt(base.release.publishedAt, base));
  });

  it('outside the window nothing happens; inside it installs', () => {
    // 2026-12-07 is a Monday; 20:00 UTC.
    const outside = decide({ ...base, windows: [parseWindow('Mon-Fri 02:00-05:00')] });
    expect(outside).toMatchObject({ do: 'wait', why: 'outside the update window' });
    expect(decide({ ...base, windows: [parseWindow('Mon 19:00-21:00')] }).do).toBe('install');
    // The same instant is another wall clock in another zone: 05:00 on Tuesday in Tokyo.
    expect(decide({ ...base, windows: [parseWindow('Tue 04:00-06:00')], timezone: 'Asia/Tokyo' }).do).toBe(
      'install',
    );
  });

  it('notify mode says what is available and installs nothing', () => {
    expect(decide({ ...base, mode: 'notify' })).toEqual({ do: 'announce', version: '0.4.1' });
  });

  it('a plugin whose core range excludes the release holds it back, in one line naming it and its range', () => {
    const plugins = [
      { name: 'usepod-agent-plugin-free', range: undefined },
      { name: 'usepod-agent-plugin-pinned', range: '>=0.4.0 <0.4.1' },
    ];
    expect(decide({ ...base, plugins })).toEqual({
      do: 'held',
      version: '0.4.1',
      why: 'update to 0.4.1 held back: plugin usepod-agent-plugin-pinned requires @usepod-agent/core >=0.4.0 <0.4.1',
    });
    expect(stranded([{ name: 'x', range: 'not a range' }], '0.4.1')).toBe(
      'plugin x requires @usepod-agent/core not a range',
    );
    expect(stranded([{ name: 'x', range: '^0.4.0' }], '0.4.1')).toBeUndefined();
  });
});

describe('[update]', () => {
  it('defaults to notify on latest, a check every 6 h, a 5 min health timeout', () => {
    expect(updateSection.parse({})).toMatchObject({
      mode: 'notify',
      channel: 'latest',
      check_interval: 6 * HOUR,
      health_timeout: 300_000,
      window: [],
    });
  });

  it('reads durations as text or seconds, and refuses what is not one, saying why', () => {
    expect(updateSection.parse({ check_interval: 90, health_timeout: '2m' })).toMatchObject({
      check_interval: 90_000,
      health_timeout: 120_000,
    });
    const bad = updateSection.safeParse({ health_timeout: 'soon' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toContain('"soon" is not a duration');
    expect(updateSection.safeParse({ mode: 'always' }).success).toBe(false);
    expect(updateSection.safeParse({ channel: 'latest; rm -rf /' }).success).toBe(false);
    expect(updateSection.safeParse({ window: 'Mon-Fri 2am' }).error?.issues[0]?.message).toContain(
      'is not "DAYS HH:MM-HH:MM"',
    );
    expect(updateSection.safeParse({ timezone: 'Mars/Olympus' }).error?.issues[0]?.message).toContain(
      'is not an IANA time zone',
    );
    expect(updateSection.safeParse({ unknown: 1 }).success).toBe(false);
  });
});
