import { describe, expect, it } from 'vitest';
import { parseWindow, quietWindowAt } from '../packages/core/src/agent/schedule.js';
import { validateConfig } from '../packages/core/src/config/validate.js';
import { type Rig, rig } from './helpers.js';

/** Quiet hours (issue 19): `[schedule] pause` windows in an IANA time zone, applied live. */
describe('quiet hours', () => {
  it('reads day ranges and times in a time zone, across midnight and daylight saving', () => {
    const w = [parseWindow('Mon-Fri 09:00-18:00')];
    // Monday 2026-11-30 10:00 in Berlin (UTC+1) is 09:00 UTC.
    expect(quietWindowAt(w, 'Europe/Berlin', Date.parse('2026-11-30T09:00:00Z'))?.text).toBe(
      'Mon-Fri 09:00-18:00',
    );
    expect(quietWindowAt(w, 'Europe/Berlin', Date.parse('2026-11-30T07:59:00Z'))).toBeUndefined();
    expect(quietWindowAt(w, 'Europe/Berlin', Date.parse('2026-11-29T10:00:00Z'))).toBeUndefined(); // Sunday
    // Summer time: 09:30 in Berlin is 07:30 UTC.
    expect(quietWindowAt(w, 'Europe/Berlin', Date.parse('2026-07-06T07:30:00Z'))).toBeDefined();
    const night = [parseWindow('Sat 22:00-06:00')];
    expect(quietWindowAt(night, 'UTC', Date.parse('2026-11-28T23:00:00Z'))).toBeDefined(); // Saturday night
    expect(quietWindowAt(night, 'UTC', Date.parse('2026-11-29T05:59:00Z'))).toBeDefined(); // Sunday morning
    expect(quietWindowAt(night, 'UTC', Date.parse('2026-11-30T05:00:00Z'))).toBeUndefined(); // Monday morning
    expect(parseWindow('daily 00:00-24:00').days.size).toBe(7);
    expect(parseWindow('Sat,Sun 10:00-12:00').days).toEqual(new Set([6, 0]));
  });

  it('explains a bad entry in one line naming the key', () => {
    expect(() =>
      validateConfig({ schedule: { pause: ['weekdays 9-5'] } }, { source: '/etc/agent.toml' }),
    ).toThrow(/schedule\.pause\[0\].*"weekdays" is not a day|schedule\.pause\[0\].*is not a time/);
    expect(() => validateConfig({ schedule: { pause: ['Mon 25:00-26:00'] } })).toThrow(
      /"25:00" is not a time/,
    );
    expect(() => validateConfig({ schedule: { timezone: 'Mars/Olympus' } })).toThrow(
      /schedule\.timezone.*"Mars\/Olympus" is not an IANA time zone/,
    );
  });

  let r: Rig | undefined;
  it('pauses when a window opens and resumes when it closes, with an injected clock', async () => {
    let now = Date.parse('2026-11-30T10:00:00Z'); // a Monday
    try {
      r = await rig({
        config: { schedule: { pause: ['Mon 09:00-11:00'], timezone: 'UTC' } },
        timing: { now: () => now, scheduleCheckMs: 20 },
      });
      // Inside the window from the start: nothing advertised, a job turned away.
      expect(r.t.agent.snapshot().paused).toMatchObject({ reason: 'quiet hours (Mon 09:00-11:00)' });
      expect(await r.session.dispatch({ model_id: 'Qwen/Qwen3-14B' }).done()).toMatchObject({
        error_code: 'out_of_capacity',
      });
      const open = r.session.nextFrame('capabilities');
      now = Date.parse('2026-11-30T11:00:00Z');
      expect(((await open).models as unknown[]).length).toBe(1);
      expect(r.t.agent.snapshot().paused).toBeUndefined();
      // The next window closes it again; the owner resuming inside it is left alone until it ends.
      const closed = r.session.nextFrame('capabilities');
      now = Date.parse('2026-12-07T09:30:00Z');
      expect((await closed).models).toEqual([]);
      r.t.agent.resume();
      await new Promise((res) => setTimeout(res, 100));
      expect(r.t.agent.snapshot().paused).toBeUndefined();
    } finally {
      await r?.close();
    }
  });
});
