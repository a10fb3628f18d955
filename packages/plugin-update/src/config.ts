import { checkTimezone, parseWindow, type WeeklyWindow } from '@usepod-agent/core';
import ms from 'ms';
import { z } from 'zod';

/** `"6h"`, `"30s"`, `"2d"` or a number of seconds, as milliseconds within [min, max]. */
function duration(fallback: string, min: number, max: number) {
  return z
    .union([z.number(), z.string()])
    .default(fallback)
    .transform((v, ctx) => {
      const n = typeof v === 'number' ? v * 1000 : ms(v as ms.StringValue);
      if (typeof n !== 'number' || !Number.isFinite(n)) {
        ctx.addIssue({
          code: 'custom',
          message: `"${String(v)}" is not a duration (for example "30s", "6h", "2d")`,
        });
        return z.NEVER;
      }
      if (n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be between ${ms(min)} and ${ms(max)}` });
        return z.NEVER;
      }
      return n;
    });
}

const DAY = 86_400_000;

/** `[update]`: how this machine follows releases (docs/updates.md). */
export const updateSection = z.strictObject({
  /** off: never looks; notify: says when a release is available; auto: installs it, in the window. */
  mode: z.enum(['off', 'notify', 'auto']).default('notify'),
  /** The npm dist-tag followed. */
  channel: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9._-]{0,39}$/, 'must be an npm dist-tag (latest, next)')
    .default('latest'),
  /** When an update may be applied: `[schedule]`'s grammar ("Mon-Fri 02:00-05:00"); none: any time. */
  window: z
    .union([z.string(), z.array(z.string()).max(14)])
    .optional()
    .transform((v, ctx): WeeklyWindow[] => {
      const list = v === undefined ? [] : Array.isArray(v) ? v : [v];
      try {
        return list.map(parseWindow);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  timezone: z
    .string()
    .optional()
    .superRefine((tz, ctx) => {
      if (tz === undefined) return;
      try {
        checkTimezone(tz);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
  check_interval: duration('6h', 1000, 30 * DAY),
  health_timeout: duration('5m', 1000, 6 * 3_600_000),
  /** A release is not installed before it is this old (a bad one is usually pulled sooner). */
  min_age: duration('2h', 0, 30 * DAY),
  /** The longest extra wait, spread over the fleet by a hash of the provider id. */
  spread: duration('6h', 0, 30 * DAY),
  /** The npm registry asked; none: npm's own (its config, `npm_config_registry`). */
  registry: z
    .url({ protocol: /^https?$/ })
    .refine(
      // It is on npm's command line (any local user reads those) and in a plugin look-up's error, which
      // quotes an address with credentials: the registry's login belongs in .npmrc, which npm reads for it.
      (u) => !/^[a-z]+:\/\/[^/?#]*@/i.test(u),
      'an address without user:password@ (put the registry’s credentials in .npmrc)',
    )
    .optional(),
  /** The side-by-side folder; none: `update/` beside the identity key. */
  dir: z.string().min(1).max(1024).optional(),
});

export type UpdateConfig = z.output<typeof updateSection>;
