import type { Format } from './config.js';
import { markdownEscape, slackEscape } from './escape.js';
import { clip, fold, MAX_VALUE, type Text } from './text.js';

/** One alert, before it is shaped for a webhook. */
export interface Alert {
  /** The `events` name it answers to (`disconnected`, `backend_down`, ...). */
  event: string;
  severity: 'critical' | 'warning' | 'info';
  /** True when it says a trouble already told of is over. */
  resolved: boolean;
  /** The plugin's words with the values from outside kept apart, escaped per format (`text.ts`). */
  title: Text;
  message: Text;
  host: string;
  providerId: string | undefined;
  at: string;
  details: Record<string, string | number | boolean>;
  /**
   * What it is about, the same for a trouble and its end (a backend, a plugin's notice); default: the
   * event. The rate limit keeps the newest alert on a subject it held back and sends it later (`budget.ts`).
   */
  subject?: string;
  /** Whose rate-limit budget it spends (a backend, a plugin); default: the event's own. */
  source?: string;
}

/**
 * The request for one alert in each webhook's format: where to POST and the JSON body. Text from outside
 * is escaped for the chats that format (Discord, Slack) and folded for the plain ones (ntfy, JSON).
 */
export function requestFor(
  format: Format,
  url: string,
  a: Alert,
  headers: Readonly<Record<string, string>> = {},
): { url: string; body: unknown } {
  switch (format) {
    case 'ntfy': {
      // Plain text unless the owner's headers turn ntfy's Markdown on; then the values are escaped.
      const md = Object.entries(headers).some(
        ([k, v]) => /^(x-)?(markdown|md)$/i.test(k) && /^(1|yes|true)$/i.test(v.trim()),
      );
      const render = (t: Text) => (md ? t.render(markdownEscape) : String(t));
      // JSON publishing (docs.ntfy.sh/publish/#publish-as-json): POST to the server's root with the topic
      // in the body, which carries any title text where a Title header could not. The topic is the URL's
      // last segment; what comes before it is the root of a server behind a proxy's sub-path, and the
      // query stays (ntfy takes `?auth=` for an access token).
      const u = new URL(url);
      const segments = u.pathname.split('/').filter(Boolean);
      const topic = segments.pop() ?? '';
      u.pathname = `/${segments.map((s) => `${s}/`).join('')}`;
      u.hash = '';
      return {
        url: u.href,
        body: {
          topic,
          title: clip(String(a.title), 250),
          message: clip(render(a.message), 4000),
          priority: a.resolved ? 3 : a.severity === 'critical' ? 5 : a.severity === 'warning' ? 4 : 3,
          tags: [a.resolved ? 'white_check_mark' : a.severity === 'info' ? 'information_source' : 'warning'],
        },
      };
    }
    case 'discord':
      return {
        url,
        body: {
          username: 'usepod-agent',
          content: clip(`**${a.title.render(markdownEscape)}**\n${a.message.render(markdownEscape)}`, 2000),
          // Text from engines and the coordinator must never ping @everyone or a role.
          allowed_mentions: { parse: [] },
        },
      };
    case 'slack':
      return {
        url,
        body: { text: clip(`*${a.title.render(slackEscape)}*\n${a.message.render(slackEscape)}`, 3000) },
      };
    default:
      return {
        url,
        body: {
          source: 'usepod-agent',
          event: a.event,
          severity: a.severity,
          resolved: a.resolved,
          title: String(a.title),
          message: String(a.message),
          host: plain(a.host),
          provider_id: a.providerId === undefined ? null : plain(a.providerId),
          at: a.at,
          details: Object.fromEntries(
            Object.entries(a.details).map(([k, v]) => [k, typeof v === 'string' ? plain(v) : v]),
          ),
        },
      };
  }
}

/** A value for a plain-text field: folded and clipped as `text` does in a message. */
function plain(s: string): string {
  return clip(fold(s), MAX_VALUE);
}
