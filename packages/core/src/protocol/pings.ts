import WebSocket from 'ws';

/**
 * Pings answered with one pong in flight at a time, for the newest ping (RFC 6455 5.5.3 allows answering
 * only the most recent one): a ping flood costs one buffer, never the session. ws's own answer (`autoPong`)
 * drops the session after 60 pending pongs, so the session turns it off and calls this.
 */
export function answerPings(ws: WebSocket): void {
  let inFlight = false;
  let next: Buffer | undefined;
  const sent = (): void => {
    inFlight = false;
    if (next === undefined) return;
    const data = next;
    next = undefined;
    pong(data);
  };
  const pong = (data: Buffer): void => {
    if (ws.readyState !== WebSocket.OPEN) return;
    inFlight = true;
    ws.pong(data, undefined, sent);
  };
  ws.on('ping', (data: Buffer) => {
    if (inFlight) next = data;
    else pong(data);
  });
}
