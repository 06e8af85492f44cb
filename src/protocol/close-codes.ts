// WebSocket close codes the gateway sends (brief §5). Clients key their
// reconnect policy on these; never reuse a number for another meaning.
export const CloseCodes = {
  NORMAL: 1000,
  DRAINING: 1001,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
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
