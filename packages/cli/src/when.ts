/**
 * One format for every date a person reads from the CLI (issue 28: US-locale and ISO dates were mixed):
 * `2026-12-06 14:05 +01:00`, this machine's local time with its offset from UTC. JSON output carries full
 * ISO 8601 (`toISOString()`) instead.
 */
export function localTime(at: Date | number | string): string {
  const d = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(d.getTime())) return 'an unknown time';
  const two = (n: number) => String(n).padStart(2, '0');
  const offset = -d.getTimezoneOffset();
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())} ${sign}${two(Math.floor(abs / 60))}:${two(abs % 60)}`;
}
