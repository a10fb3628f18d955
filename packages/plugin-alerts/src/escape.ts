/**
 * One escape per chat format, for a value from outside put into the plugin's words (see `text.ts`,
 * which has already folded control characters and clipped it).
 */

/**
 * Markdown: Discord's (`**`, `[masked](links)`, `# headings`, `> quotes`, `||spoilers||`, and mention
 * syntax `@everyone`, `<@id>`, `<t:…>`) and CommonMark's (ntfy with `Markdown: yes`). Both show a
 * backslash before any ASCII punctuation as the character itself, so one rule covers all of it, now
 * and as Discord adds syntax. For Discord, `allowed_mentions` stays the second lock on pings.
 */
export function markdownEscape(s: string): string {
  return s.replace(/[!-/:-@[-`{-~]/g, '\\$&');
}

/**
 * Slack mrkdwn: `&`, `<` and `>` as entities (api.slack.com "Escaping text"), so no `<!channel>`,
 * `<@U…>` or `<https://…|text>` link is made. Slack has no escape for `*`, `_`, `~` and `` ` ``: where
 * one could open or close formatting (not between two letters or digits, as in `Q4_K_M`), it becomes a
 * look-alike that formats nothing.
 */
export function slackEscape(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/`/g, '\u02cb')
    .replace(/(?<![\p{L}\p{N}])[*_~]|[*_~](?![\p{L}\p{N}])/gu, (c) => SLACK_LOOKALIKE[c]!);
}

const SLACK_LOOKALIKE: Record<string, string> = { '*': '\u2217', _: '\uff3f', '~': '\u223c' };
