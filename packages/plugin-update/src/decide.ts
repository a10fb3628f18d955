import { type WeeklyWindow, windowAt } from '@usepod-agent/core';
import gt from 'semver/functions/gt.js';
import type { OperatorPlugin } from './ranges.js';
import { stranded } from './ranges.js';
import { eligibleAt } from './spread.js';

/** What a check concludes; the updater acts on it (updater.ts). Pure, so each rule is tested alone. */
export type Decision =
  | { do: 'nothing'; why: string }
  | { do: 'held'; version: string; why: string }
  | { do: 'announce'; version: string }
  | { do: 'wait'; version: string; until: number; why: string }
  | { do: 'install'; version: string };

export interface DecideInput {
  mode: 'notify' | 'auto';
  running: string;
  release: { version: string; publishedAt: number };
  bad: readonly string[];
  plugins: readonly OperatorPlugin[];
  /** Plugins' compatible releases that would come along with the release (companions.ts). */
  companions?: readonly { name: string }[];
  now: number;
  providerId: string | undefined;
  minAgeMs: number;
  spreadMs: number;
  windows: readonly WeeklyWindow[];
  timezone: string | undefined;
}

export function decide(i: DecideInput): Decision {
  const v = i.release.version;
  if (!gt(v, i.running)) return { do: 'nothing', why: `${i.running} is the newest on the channel` };
  if (i.bad.includes(v))
    return { do: 'nothing', why: `${v} failed its health check on this machine and is not installed again` };
  const strands = stranded(i.plugins, v, i.companions);
  if (strands) return { do: 'held', version: v, why: `update to ${v} held back: ${strands}` };
  if (i.mode === 'notify') return { do: 'announce', version: v };
  const at = eligibleAt(i.release.publishedAt, i);
  if (i.now < at)
    return { do: 'wait', version: v, until: at, why: 'minimum age and this machine’s spread delay' };
  if (i.windows.length > 0 && !windowAt([...i.windows], i.timezone, i.now))
    return { do: 'wait', version: v, until: i.now, why: 'outside the update window' };
  return { do: 'install', version: v };
}
