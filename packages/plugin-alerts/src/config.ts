import { UsepodError } from '@usepod-agent/core';
import { z } from 'zod';

/** What an owner can choose to hear of, by `events = [...]` in an `[[alerts]]` entry. */
export const ALERT_EVENTS = [
  'disconnected',
  'auth_refused',
  'backend_down',
  'model_withdrawn',
  'gpu_yield',
  'idle',
  'budget_exhausted',
  /** What another plugin tells the owner (`ctx.notify`: the ledger cannot write, the GPU runs hot...). */
  'notice',
] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export const FORMATS = ['json', 'ntfy', 'discord', 'slack'] as const;
export type Format = (typeof FORMATS)[number];

const webUrl = z
  .string()
  .refine((v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'https:' || u.protocol === 'http:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  // fetch refuses a URL with credentials, and every alert would fail at run time: say so at load.
  .refine((v) => {
    const u = URL.parse(v);
    return !u || (u.username === '' && u.password === '');
  }, 'must not carry a user or password (put a token in headers)');

/**
 * RFC 9110 field names and values, as fetch sends them: a CR or LF, a character past U+00FF (an emoji
 * in a title) or a header the request sets itself is a request fetch refuses (or one that never ends,
 * a wrong `Content-Length`), every time. Values are printable ASCII: Latin-1 bytes reach each server
 * differently.
 */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect']);
const headers = z.record(z.string(), z.string()).superRefine((h, ctx) => {
  const issue = (name: string, message: string) => ctx.addIssue({ code: 'custom', path: [name], message });
  for (const [name, value] of Object.entries(h)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      issue(name, "a header name is letters, digits and !#$%&'*+.^_`|~-");
    else if (OWN_HEADERS.has(name.toLowerCase())) issue(name, 'is set by the request itself; remove it');
    else if (/[\0\r\n]/.test(value)) issue(name, 'a header value must not hold a line break or NUL');
    else if (/[^\t\x20-\x7e]/.test(value))
      issue(
        name,
        'a header value is printable ASCII (put words with accents or emoji in the message, not a header)',
      );
  }
});

export const alertSchema = z
  .object({
    url: webUrl,
    format: z.enum(FORMATS).default('json'),
    /** Default: every event. */
    events: z
      .array(z.enum(ALERT_EVENTS))
      .min(1)
      .default([...ALERT_EVENTS]),
    /** `disconnected`: told once the agent has been without a session this long. */
    disconnected_after_s: z.number().min(0).max(86_400).default(300),
    /** `idle`: told when no job was served for this long while connected and not paused. */
    idle_after_h: z.number().positive().max(720).default(12),
    /** Deliveries per hour of each event from each source at most (bursts of up to 5); see `budget.ts`. */
    max_per_hour: z.number().int().min(1).max(3600).default(20),
    /** Extra request headers, e.g. ntfy's `Authorization`; never logged. */
    headers: headers.optional(),
    /** A label for this webhook in the logs (the URL's path is never logged: it is often the secret). */
    name: z.string().min(1).max(60).optional(),
  })
  .strict();
export type AlertConfig = z.output<typeof alertSchema>;

/** `[[alerts]]`, the plugin's section: every entry checked by the agent, mistakes at `file:line:column`. */
export const alertsSection = z.array(alertSchema);

/**
 * Reads `[[alerts]]`; a mistake is one line naming the file and the key, as core's own are. `locate`
 * turns a key into `file:line:column` where the caller has the file's text.
 */
export function readAlerts(
  raw: readonly unknown[],
  source: string | undefined,
  locate?: (key: string) => string | undefined,
): AlertConfig[] {
  return raw.map((entry, i) => {
    const parsed = alertSchema.safeParse(entry);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0]!;
    const key = [`alerts[${i}]`, ...issue.path.map(String)].join('.');
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`
        : issue.message;
    const where = locate?.(key) ?? source ?? 'config';
    throw new UsepodError('USEPOD_CONFIG_INVALID', `${where}: ${key}: ${what}`, { user: true });
  });
}

/** `https://discord.com/…`: where a webhook goes, without the path and query that hold its secret. */
export function safeTarget(a: Pick<AlertConfig, 'url' | 'name' | 'format'>): string {
  const u = new URL(a.url);
  return a.name ?? `${a.format} ${u.protocol}//${u.host}/…`;
}
