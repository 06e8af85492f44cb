// WebSocket close codes the gateway sends (docs/protocol.md, Close codes). Clients key their
// reconnect policy on these; never reuse a number for another meaning.
export const CloseCodes = {
  NORMAL: 1000,
  DRAINING: 1001,
  /** malformed WebSocket framing (sent by ws itself) */
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  /** a message in more fragments than ws buffers (sent by ws itself) */
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  AUTH_EXPIRED: 4001,
  FORBIDDEN: 4003,
  SESSION_REVOKED: 4004,
  SLOW_CONSUMER: 4008,
  HEARTBEAT_TIMEOUT: 4009,
  RATE_LIMITED: 4029,
} as const

export type CloseCode = typeof CloseCodes[keyof typeof CloseCodes]

// Codes the client SDK reports in its `disconnect` event for attempts and
// sockets it ended itself; no server sends them. Numbers apart from CloseCodes
// (4900 up for the SDK's own), so a code always tells who decided what.
export const ClientCloseCodes = {
  /** no socket was opened: getToken failed or returned nothing, or the WebSocket constructor threw */
  NO_SOCKET: 0,
  /** what the WebSocket API reports for a socket that ended without a close frame; also a handshake refused before the upgrade */
  ABNORMAL: 1006,
  /** no `welcome` within connectTimeoutMs */
  CONNECT_TIMEOUT: 4901,
  /** the kept subscriptions could not be restored on a new connection */
  RESTORE_FAILED: 4902,
} as const
