import { RefusalReconnect, type Reconnect } from './protocol/close-codes.js'
import { ID_RULE } from './protocol/identifiers.js'

// One registry of stable error codes, shared by HTTP refusals and `error` frames.
// Codes never change meaning once published; add new ones instead.
export interface ErrorDef {
  readonly code: string
  readonly status: number
  /** the default message sent with the code */
  readonly message: string
  /** the same request may succeed later, unchanged (after Retry-After when there is one) */
  readonly retryable: boolean
  /** for a refused WebSocket handshake: what the client does next (src/protocol/close-codes.ts) */
  readonly reconnect?: Reconnect
  /** when it is sent, for docs/protocol.md */
  readonly when: string
}

function def (code: string, status: number, retryable: boolean, message: string, when: string): ErrorDef {
  const reconnect = Object.hasOwn(RefusalReconnect, code) ? RefusalReconnect[code as keyof typeof RefusalReconnect] : undefined
  return reconnect === undefined ? { code, status, retryable, message, when } : { code, status, retryable, message, when, reconnect }
}

export const Errors = {
  // handshake / HTTP
  TOKEN_MISSING: def('TOKEN_MISSING', 401, false, 'an access token is required (Authorization: Bearer or ?token=)', 'no token on the handshake'),
  TOKEN_INVALID: def('TOKEN_INVALID', 401, false, 'the access token is invalid', 'bad signature or algorithm, malformed, no `exp`/`sub`, future `iat`, `exp`/`iat`/`nbf` not seconds between 1970 and 9999, `sub`/`sid` not ' + ID_RULE + ', wrong `iss`/`aud`, unknown `kid`; `?token=` given twice'),
  TOKEN_EXPIRED: def('TOKEN_EXPIRED', 401, false, 'the access token has expired', '`exp` passed (beyond `JWT_CLOCK_TOLERANCE`)'),
  ORIGIN_FORBIDDEN: def('ORIGIN_FORBIDDEN', 403, false, 'this Origin is not allowed', 'a browser `Origin` not in `ALLOWED_ORIGINS` (on `/ws/admin`, nor the origin the request was sent to: the dashboard\'s)'),
  ROLE_FORBIDDEN: def('ROLE_FORBIDDEN', 403, false, 'the token lacks the role this endpoint requires', '`/ws/admin` without role `admin`, an API route without the role it needs'),
  CREDENTIAL_MISSING: def('CREDENTIAL_MISSING', 401, false, 'a service credential is required (Authorization: Bearer <api key or service token>)', 'an API call without an API key or service JWT'),
  CREDENTIAL_INVALID: def('CREDENTIAL_INVALID', 401, false, 'the service credential is invalid', 'an API call with a key or JWT that is not valid'),
  SESSION_REVOKED: def('SESSION_REVOKED', 401, false, 'this session or user has been revoked', 'the session, or the user since the token\'s `iat`, was revoked'),
  CONNECTION_LIMIT: def('CONNECTION_LIMIT', 429, true, 'too many open connections', 'the IP or the user holds its cluster-wide connection quota (`Retry-After`)'),
  UPGRADE_REQUIRED: def('UPGRADE_REQUIRED', 426, false, 'this endpoint speaks WebSocket only', 'a plain GET on a WebSocket endpoint'),
  NODE_FULL: def('NODE_FULL', 503, true, 'this node is at its connection capacity', 'this node holds `WEBSOCKET_MAX_CONNECTIONS`: connect to another'),
  DRAINING: def('DRAINING', 503, true, 'this node is draining; connect to another', 'the node is shutting down: connect to another'),
  BACKEND_UNAVAILABLE: def('BACKEND_UNAVAILABLE', 503, true, 'the cluster backend is unreachable', 'Redis (or the JWKS endpoint) unreachable or not answering; for publishes, the outage buffer is full'),
  VALIDATION: def('VALIDATION', 400, false, 'the request is invalid', 'an API body, path parameter or publisher-library input does not match its schema (the message says which field and why)'),
  DATA_TOO_DEEP: def('DATA_TOO_DEEP', 400, false, 'event or notification data nests too deeply', 'event or notification `data` nested more than 32 levels (API, client `publish`, admin `broadcast`, publisher library); a Socket.IO packet nested too deeply to be measured, thousands of levels, whatever its event'),
  BAD_JSON: def('BAD_JSON', 400, false, 'the frame is not valid JSON', 'a frame, or an API body sent as `application/json`, is not JSON (or is empty)'),
  PAYLOAD_TOO_LARGE: def('PAYLOAD_TOO_LARGE', 413, false, 'the request body is too large', 'an API body over 64 KiB (1 MiB for `POST /api/events/batch`)'),
  UNSUPPORTED_MEDIA_TYPE: def('UNSUPPORTED_MEDIA_TYPE', 415, false, 'unsupported media type', 'an API body that is not `application/json`'),
  HEADERS_TOO_LARGE: def('HEADERS_TOO_LARGE', 431, false, 'the request headers are too large', 'the request line and headers together past Node\'s limit (16 KiB)'),
  REQUEST_TIMEOUT: def('REQUEST_TIMEOUT', 408, true, 'the request was not received in time', 'a request (or handshake) not received within `HANDSHAKE_TIMEOUT`'),
  MALFORMED_REQUEST: def('MALFORMED_REQUEST', 400, false, 'the request is not valid HTTP', 'a request Node\'s HTTP parser or the router cannot read: broken syntax, a body that does not match its Content-Length, a path that is not valid percent-encoding; a CONNECT (Herald is not a proxy)'),
  NOT_FOUND: def('NOT_FOUND', 404, false, 'not found', 'no such route'),
  UNKNOWN_STREAM: def('UNKNOWN_STREAM', 404, false, 'no such stream: streams are user:<userId>, group:<name>, broadcast and admin', 'a stream name that is not `user:<userId>`, `group:<name>`, `broadcast` or `admin`'),
  HISTORY_OFF: def('HISTORY_OFF', 404, false, 'this cluster keeps no history (HISTORY_SIZE or HISTORY_TTL is 0)', 'reading a stream from a cluster whose history is off'),
  WEBHOOK_NOT_FOUND: def('WEBHOOK_NOT_FOUND', 404, false, 'no such webhook endpoint', 'an `/api/webhooks/:id` route naming an endpoint that does not exist'),
  WEBHOOK_URL_REFUSED: def('WEBHOOK_URL_REFUSED', 400, false, 'this webhook URL may not be delivered to', 'a webhook URL that is not https (unless `WEBHOOK_ALLOW_HTTP`), carries credentials, or is an IP address that is not public (unless in `WEBHOOK_ALLOW_PRIVATE`)'),
  TOO_MANY_WEBHOOKS: def('TOO_MANY_WEBHOOKS', 409, false, 'the cluster has as many webhook endpoints as it may (1000)', 'creating a webhook endpoint past 1000'),
  TOO_MANY_GROUPS: def('TOO_MANY_GROUPS', 409, false, 'the user is a member of as many groups as it may be through the API (1000)', '`PUT /api/groups/:group/members/:userId` for a user in 1000 groups already'),
  VISITORS_UNAVAILABLE: def('VISITORS_UNAVAILABLE', 404, false, 'this node cannot sign visitor tokens: it verifies with a public key or JWKS only', '`POST /api/visitors` on a node without `JWT_SECRET`: mint visitor tokens with your own signer (docs/protocol.md, Visitor tokens)'),
  INTERNAL: def('INTERNAL', 500, true, 'internal error', 'a bug: the node failed handling a valid request'),
  // frames
  BAD_MESSAGE: def('BAD_MESSAGE', 400, false, 'the frame is not a valid message envelope', 'not an object, `type` missing or not a string of 1-64 characters, or `id` not a string of at most 128'),
  UNKNOWN_TYPE: def('UNKNOWN_TYPE', 400, false, 'unknown message type', 'no such request type on this endpoint'),
  INVALID_PAYLOAD: def('INVALID_PAYLOAD', 400, false, 'the payload is invalid for this message type', 'payload not an object, or a field missing or of the wrong shape (the message says which); a Socket.IO event carrying binary attachments (a Buffer or an ArrayBuffer)'),
  INVALID_PATTERN: def('INVALID_PATTERN', 400, false, 'an event type pattern is invalid', 'an event type pattern is malformed (nothing subscribed)'),
  TOO_MANY_SUBSCRIPTIONS: def('TOO_MANY_SUBSCRIPTIONS', 400, false, 'the connection would exceed its subscription limit', 'the request would take the connection past `MAX_SUBSCRIPTIONS` (nothing subscribed)'),
  FORBIDDEN: def('FORBIDDEN', 403, false, 'not allowed on this connection', 'a request this connection may not make; a Socket.IO CONNECT while another on the same engine.io session is being admitted'),
  RATE_LIMITED: def('RATE_LIMITED', 429, true, 'too many messages; slow down', 'over `MAX_MESSAGES_PER_MINUTE` for the user or the IP (cluster-wide); the message was dropped'),
  STREAM_FORBIDDEN: def('STREAM_FORBIDDEN', 403, false, 'this connection may not read that stream', 'a `since` naming a stream the connection does not read (another user\'s, or `admin` on `/ws/events`): nothing subscribed, nothing replayed'),
  PUBLISH_FORBIDDEN: def('PUBLISH_FORBIDDEN', 403, false, 'this token may not publish this event type', 'a `publish` whose type no pattern of the token\'s `publish` claim matches, or from a token without one'),
  RESERVED_TYPE: def('RESERVED_TYPE', 403, false, 'clients may not publish this event type', 'a `publish` of an `authentication`, `security`, `session`, `admin` or `system` type, whatever the `publish` claim says'),
  IDENTITY_MISMATCH: def('IDENTITY_MISMATCH', 403, false, 'the payload names another identity than the token', 'a `publish` whose payload or `data` carries a `userId`, `agentId`, `sessionId` or `source` that is not the token\'s, or whose `data` holds a `__proto__` key at any level (a receiver merging it would take it for a prototype)'),
  NOT_A_MEMBER: def('NOT_A_MEMBER', 403, false, 'not a member of this group', 'a `publish` into a group the connection\'s user is not a member of'),
  PUBLISH_TOO_LARGE: def('PUBLISH_TOO_LARGE', 413, false, 'the publish frame is too large', 'a `publish` frame over `MAX_PUBLISH_BYTES` (Socket.IO: its packet); every other frame over `MAX_MESSAGE_BYTES` closes 1009'),
  SCHEMA_MISMATCH: def('SCHEMA_MISMATCH', 400, false, 'the data does not match the schema configured for this event type', 'a `publish` whose `data` fails the JSON schema `PUBLISH_SCHEMAS` gives its type (the message says where and why)'),
  PUBLISH_PENDING: def('PUBLISH_PENDING', 409, true, 'a publish with this key is still in progress', 'a `publish` whose `key` an earlier publish of the same user holds and has not finished: retry'),
  REFRESH_REJECTED: def('REFRESH_REJECTED', 401, false, 'the refresh token was not accepted', 'the `refresh` token was not accepted; the connection keeps its old expiry; a guest (`ALLOW_ANONYMOUS`) has no token to renew'),
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
