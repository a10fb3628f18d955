import type { Format } from './config.js';

/** One alert, before it is shaped for a webhook. */
export interface Alert {
  /** The `events` name it answers to (`disconnected`, `backend_down`, ...). */
  event: string;
  severity: 'critical' | 'warning' | 'info';
  /** True when it says a trouble already told of is over. */
  resolved: boolean;
  title: string;
  message: string;
  host: string;
  providerId: string | undefined;
  at: string;
  details: Record<string, string | number | boolean>;
}

/** The request for one alert in each webhook's format: where to POST and the JSON body. */
export function requestFor(format: Format, url: string, a: Alert): { url: string; body: unknown } {
  switch (format) {
    case 'ntfy': {
      // JSON publishing (docs.ntfy.sh/publish/#publish-as-json): POST to the server root with the topic
      // in the body, which carries any title text where a Title header could not.
      const u = new URL(url);
      const topic = u.pathname.replace(/^\/+|\/+$/g, '');
      return {
        url: `${u.origin}/`,
        body: {
          topic,
          title: a.title,
          message: a.message,
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
          content: clip(`**${a.title}**\n${a.message}`, 2000),
          // Text from engines and the coordinator must never ping @everyone or a role.
          allowed_mentions: { parse: [] },
        },
      };
    case 'slack':
      return { url, body: { text: clip(`*${slackEscape(a.title)}*\n${slackEscape(a.message)}`, 3000) } };
    default:
      return {
        url,
        body: {
          source: 'usepod-agent',
          event: a.event,
          severity: a.severity,
          resolved: a.resolved,
          title: a.title,
          message: a.message,
          host: a.host,
          provider_id: a.providerId ?? null,
          at: a.at,
          details: a.details,
        },
      };
  }
}

/** Slack reads `<...>` as links and mentions (`<!channel>`): text we relay must not make one. */
function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
