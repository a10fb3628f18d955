/**
 * Quiet hours (issue 19): `[schedule] pause = ["Mon-Fri 09:00-18:00", "Sat 22:00-02:00"]` in an IANA
 * `timezone` (default: the machine's). A window may cross midnight; it then belongs to the day it starts.
 * The wall clock in that zone comes from Intl, so daylight-saving changes need nothing of ours.
 */
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface QuietWindow {
  text: string;
  days: Set<number>;
  /** Minutes after midnight. */
  start: number;
  end: number;
}

function day(name: string): number {
  const i = DAYS.indexOf(name.toLowerCase().slice(0, 3));
  if (i < 0 || !/^[a-z]{3,9}$/i.test(name)) throw new Error(`"${name}" is not a day (Mon, Tue, ... Sun)`);
  return i;
}

function minutes(hhmm: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm);
  if (!m || Number(m[1]) > 24 || Number(m[2]) > 59 || (Number(m[1]) === 24 && Number(m[2]) > 0)) {
    throw new Error(`"${hhmm}" is not a time (HH:MM, 00:00 to 24:00)`);
  }
  return Number(m[1]) * 60 + Number(m[2]);
}

/** `Mon-Fri 09:00-18:00`, `Sat,Sun 00:00-24:00`, `daily 22:00-06:00`; throws saying what is wrong. */
export function parseWindow(text: string): QuietWindow {
  const m = /^\s*(\S+)\s+(\S+)-(\S+)\s*$/.exec(text);
  if (!m) throw new Error(`"${text}" is not "DAYS HH:MM-HH:MM" (for example "Mon-Fri 09:00-18:00")`);
  const days = new Set<number>();
  if (/^(daily|every ?day|\*)$/i.test(m[1]!)) for (let d = 0; d < 7; d++) days.add(d);
  else {
    for (const part of m[1]!.split(',')) {
      const [a, b] = part.split('-');
      const from = day(a!);
      const to = b === undefined ? from : day(b);
      for (let d = from; ; d = (d + 1) % 7) {
        days.add(d);
        if (d === to) break;
      }
    }
  }
  const start = minutes(m[2]!);
  const end = minutes(m[3]!);
  if (start === end) throw new Error(`"${text}" starts and ends at the same time`);
  return { text, days, start, end };
}

/** Checks an IANA zone name; throws the way parseWindow does. */
export function checkTimezone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new Error(`"${tz}" is not an IANA time zone (for example "Europe/Berlin")`);
  }
}

/** Weekday (0 = Sunday) and minutes after midnight of `at` in `tz`. */
function wallClock(at: number, tz: string | undefined): { day: number; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    ...(tz ? { timeZone: tz } : {}),
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return { day: day(get('weekday')), minute: Number(get('hour')) * 60 + Number(get('minute')) };
}

/** The window `at` falls in, if any. */
export function quietWindowAt(
  windows: QuietWindow[],
  tz: string | undefined,
  at: number,
): QuietWindow | undefined {
  const { day: d, minute } = wallClock(at, tz);
  const yesterday = (d + 6) % 7;
  return windows.find((w) =>
    w.start < w.end
      ? w.days.has(d) && minute >= w.start && minute < w.end
      : // Crossing midnight: the evening of a listed day, or the morning after one.
        (w.days.has(d) && minute >= w.start) || (w.days.has(yesterday) && minute < w.end),
  );
}
