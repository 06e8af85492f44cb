// One registry of stable error codes, shared by HTTP refusals and `error` frames.
// Codes never change meaning once published; add new ones instead.
export interface ErrorDef { code: string, status: number, message: string }

const def = (code: string, status: number, message: string): ErrorDef => ({ code, status, message })

export const Errors = {
  // handshake / HTTP
  TOKEN_MISSING: def('TOKEN_MISSING', 401, 'an access token is required (Authorization: Bearer or ?token=)'),
  TOKEN_INVALID: def('TOKEN_INVALID', 401, 'the access token is invalid'),
  TOKEN_EXPIRED: def('TOKEN_EXPIRED', 401, 'the access token has expired'),
  ORIGIN_FORBIDDEN: def('ORIGIN_FORBIDDEN', 403, 'this Origin is not allowed'),
  ROLE_FORBIDDEN: def('ROLE_FORBIDDEN', 403, 'the token lacks the role this endpoint requires'),
  CREDENTIAL_MISSING: def('CREDENTIAL_MISSING', 401, 'a service credential is required (Authorization: Bearer <api key or service token>)'),
  CREDENTIAL_INVALID: def('CREDENTIAL_INVALID', 401, 'the service credential is invalid'),
  SESSION_REVOKED: def('SESSION_REVOKED', 401, 'this session or user has been revoked'),
  CONNECTION_LIMIT: def('CONNECTION_LIMIT', 429, 'too many open connections'),
  UPGRADE_REQUIRED: def('UPGRADE_REQUIRED', 426, 'this endpoint speaks WebSocket only'),
  NODE_FULL: def('NODE_FULL', 503, 'this node is at its connection capacity'),
  DRAINING: def('DRAINING', 503, 'this node is draining; connect to another'),
  BACKEND_UNAVAILABLE: def('BACKEND_UNAVAILABLE', 503, 'the cluster backend is unreachable'),
  VALIDATION: def('VALIDATION', 400, 'the request is invalid'),
  DATA_TOO_DEEP: def('DATA_TOO_DEEP', 400, 'event or notification data nests too deeply'),
  NOT_FOUND: def('NOT_FOUND', 404, 'not found'),
  INTERNAL: def('INTERNAL', 500, 'internal error'),
  // frames
  BAD_JSON: def('BAD_JSON', 400, 'the frame is not valid JSON'),
  BAD_MESSAGE: def('BAD_MESSAGE', 400, 'the frame is not a valid message envelope'),
  UNKNOWN_TYPE: def('UNKNOWN_TYPE', 400, 'unknown message type'),
  INVALID_PAYLOAD: def('INVALID_PAYLOAD', 400, 'the payload is invalid for this message type'),
  INVALID_PATTERN: def('INVALID_PATTERN', 400, 'an event type pattern is invalid'),
  TOO_MANY_SUBSCRIPTIONS: def('TOO_MANY_SUBSCRIPTIONS', 400, 'the connection would exceed its subscription limit'),
  FORBIDDEN: def('FORBIDDEN', 403, 'not allowed on this connection'),
  RATE_LIMITED: def('RATE_LIMITED', 429, 'too many messages; slow down'),
  REFRESH_REJECTED: def('REFRESH_REJECTED', 401, 'the refresh token was not accepted'),
} as const

export type ErrorCode = keyof typeof Errors

export class HeraldError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  constructor (code: ErrorCode, message?: string) {
    super(message ?? Errors[code].message)
    this.code = code
    this.statusCode = Errors[code].status
  }
}

/** Refusals that say who the client is (or is not allowed to be), as opposed to capacity or outages. */
export const isAuthFailure = (code: ErrorCode): boolean => Errors[code].status === 401 || Errors[code].status === 403

export const errorBody = (code: ErrorCode, message?: string) =>
  ({ error: { code, message: message ?? Errors[code].message } })
