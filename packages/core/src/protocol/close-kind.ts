/** How a session ended (PROTOCOL.md 6), as the agent classifies its close. */
export type CloseKind =
  | 'deploy'
  | 'operator'
  | 'graceful'
  | 'unexpected'
  | 'auth_failed'
  | 'protocol'
  | 'stopped';
