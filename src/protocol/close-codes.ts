// WebSocket close codes the gateway sends, each with what a client should do
// about it. Clients (the SDK among them) key their reconnect policy on this
// table; never reuse a number for another meaning. Plain data: the browser
// SDK bundles this module.

/**
 * What a client does after a close (or a refused handshake):
 * - `backoff`: reconnect after full-jitter exponential backoff;
 * - `soon`: this node is going away (draining) or full: reconnect at once,
 *   within a random delay (drainJitterMs), so that a load balancer sends it
 *   to another node; attempts that keep failing back off as usual;
 * - `rate-limited`: back off, but no less than a floor (Retry-After when the
 *   server said, rateLimitDelayMs otherwise);
 * - `new-token`: ask the app for a fresh token, then reconnect;
 * - `stop`: do not reconnect: retrying cannot help.
 */
export type Reconnect = 'backoff' | 'soon' | 'rate-limited' | 'new-token' | 'stop'

export interface CloseCodeDef {
  readonly code: number
  readonly reconnect: Reconnect
  /** when the node sends it */
  readonly meaning: string
}

/** Fragments one message may come in: ws's default, set on the node's servers (src/app.ts) so that this table says what they do. */
export const MAX_FRAGMENTS = 16 * 1024

const def = <C extends number>(code: C, reconnect: Reconnect, meaning: string) => ({ code, reconnect, meaning })

export const CloseCodeTable = {
  NORMAL: def(1000, 'backoff', 'normal closure'),
  DRAINING: def(1001, 'soon', 'the node is draining or shutting down'),
  /** malformed WebSocket framing (sent by ws itself) */
  PROTOCOL_ERROR: def(1002, 'backoff', 'WebSocket protocol error: an unmasked or malformed frame, reserved bits set, an unknown opcode, a control frame over 125 bytes or fragmented, a continuation with no message started'),
  UNSUPPORTED_DATA: def(1003, 'backoff', 'a binary frame was sent'),
  INVALID_PAYLOAD: def(1007, 'backoff', 'a text frame was not valid UTF-8'),
  /** a message in more fragments than ws buffers (MAX_FRAGMENTS; sent by ws itself) */
  POLICY_VIOLATION: def(1008, 'backoff', `a message came in more than ${MAX_FRAGMENTS.toLocaleString('en')} fragments`),
  MESSAGE_TOO_BIG: def(1009, 'backoff', 'a message exceeded `MAX_MESSAGE_BYTES` (one frame, or its fragments together; a `publish`: `MAX_PUBLISH_BYTES`)'),
  INTERNAL_ERROR: def(1011, 'backoff', 'internal error (e.g. could not subscribe its channels)'),
  AUTH_EXPIRED: def(4001, 'new-token', 'the token expired without a `refresh`'),
  FORBIDDEN: def(4003, 'stop', 'disconnected by an administrator, replaced by a newer connection of the same user (`evict-oldest`), or over a connection limit once the nodes wrote their slots back after Redis lost its data (reason `connection limit: over it once the cluster backend had lost its data`)'),
  SESSION_REVOKED: def(4004, 'stop', 'the session or its user was revoked: the user must sign in again'),
  SLOW_CONSUMER: def(4008, 'backoff', "slow consumer: what the client's socket has not taken passed `MAX_SEND_BUFFER_BYTES`"),
  HEARTBEAT_TIMEOUT: def(4009, 'backoff', 'heartbeat timeout: no pong and no frame for a heartbeat interval'),
  RATE_LIMITED: def(4029, 'rate-limited', 'rate limit, a message flood, or repeated invalid frames'),
} as const satisfies Record<string, CloseCodeDef>

type Table = typeof CloseCodeTable
export const CloseCodes = Object.fromEntries(Object.entries(CloseCodeTable).map(([name, d]) => [name, d.code])) as { readonly [K in keyof Table]: Table[K]['code'] }

export type CloseCode = typeof CloseCodes[keyof typeof CloseCodes]

/**
 * Codes the table does not list, by range, as centrifuge's clients read them:
 * 3500-3999 and 4500-4999 are terminal, everything else reconnects. A server
 * of a later version may send a code this client does not know; the range
 * still says whether to come back.
 */
export const CloseCodeRanges: ReadonlyArray<{ readonly from: number, readonly to: number, readonly reconnect: Reconnect, readonly meaning: string }> = [
  { from: 1000, to: 2999, reconnect: 'backoff', meaning: 'other WebSocket codes (1005 none given, 1006 closed without a close frame, 1012 restart, ...)' },
  { from: 3000, to: 3499, reconnect: 'backoff', meaning: 'registered for libraries and frameworks: transient' },
  { from: 3500, to: 3999, reconnect: 'stop', meaning: 'registered for libraries and frameworks: terminal' },
  { from: 4000, to: 4499, reconnect: 'backoff', meaning: 'this gateway, transient: a code not listed here yet' },
  { from: 4500, to: 4999, reconnect: 'stop', meaning: 'this gateway, terminal: a code not listed here yet (4900-4999 are the SDK\'s own, never sent by a node)' },
]

const byCode = new Map<number, CloseCodeDef>(Object.values(CloseCodeTable).map((d) => [d.code, d]))

/** What a client does after a close with `code`: the table, else the code's range; codes outside every range reconnect. */
export function closeReconnect (code: number): Reconnect {
  const d = byCode.get(code)
  if (d !== undefined) return d.reconnect
  for (const r of CloseCodeRanges) if (code >= r.from && code <= r.to) return r.reconnect
  return 'backoff'
}

/**
 * What a client does after its WebSocket handshake was refused before the
 * upgrade, by the error code of the refusal (the registry, src/errors.ts,
 * shows each next to its code). Here rather than there so that the browser
 * SDK reads it without bundling every message of the registry.
 */
export const RefusalReconnect = {
  TOKEN_MISSING: 'new-token',
  TOKEN_INVALID: 'new-token',
  TOKEN_EXPIRED: 'new-token',
  ORIGIN_FORBIDDEN: 'stop',
  ROLE_FORBIDDEN: 'stop',
  SESSION_REVOKED: 'stop',
  CONNECTION_LIMIT: 'rate-limited',
  NODE_FULL: 'soon',
  DRAINING: 'soon',
  BACKEND_UNAVAILABLE: 'backoff',
} as const satisfies Record<string, Reconnect>

/**
 * The policy after a handshake refused with `status` and the body's error
 * `code`: the one for a code listed above; otherwise (a newer server's code,
 * a proxy's error page) by status.
 */
export function refusalReconnect (status: number, code: string): Reconnect {
  if (Object.hasOwn(RefusalReconnect, code)) return RefusalReconnect[code as keyof typeof RefusalReconnect]
  if (status === 401) return 'new-token'
  if (status === 403) return 'stop'
  if (status === 429) return 'rate-limited'
  return 'backoff'
}

/** The table's name for a code (e.g. SESSION_REVOKED), or undefined. */
export const closeCodeName = (code: number): string | undefined => {
  for (const [name, d] of Object.entries(CloseCodeTable)) if (d.code === code) return name
  return undefined
}

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
