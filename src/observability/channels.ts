import diagnostics from 'node:diagnostics_channel'
import type { FastifyBaseLogger } from 'fastify'
import type { TokenRefusal } from '../auth/verifier.js'
import type { ErrorCode } from '../errors.js'
import { CloseCodes } from '../protocol/close-codes.js'

// Named diagnostics channels: the core publishes, and logs and metrics
// subscribe, so the core imports neither prom-client nor decides what is
// worth a log line. Publishers check hasSubscribers first to keep the hot
// path free. Channels are process-wide and a process may run several nodes
// (tests do): every message names its node (`serverId`), and a node's
// metrics count only messages of their own node. Messages that logs need
// carry the logger to write with (the connection's own child, or the node's).

/** The node a message comes from. */
interface OnNode { serverId: string }
/** `guest`: an anonymous guest (ALLOW_ANONYMOUS), whose userId is made up for the connection. */
export interface ConnectionOpen extends OnNode { endpoint: 'events' | 'admin', transport: string, connectionId: string, userId: string, guest: boolean, sessionId: string | null, ip: string, log: FastifyBaseLogger }
/** `byClient`: the peer chose `code` (any number it likes); otherwise the node chose it, or recorded 1006 for a connection lost without a close. */
export interface ConnectionClose extends OnNode {
  endpoint: 'events' | 'admin', transport: string, connectionId: string, userId: string, guest: boolean, sessionId: string | null, ip: string
  code: number, byClient: boolean, durationMs: number
  /** the node's reason when the node closed it (`session revoked`, `user revoked`, `message flood`...); null when the peer did */
  reason: string | null
  log: FastifyBaseLogger
}

/**
 * What a close is counted as: the node's own codes (the close-code registry,
 * and 1006 for a connection lost without a close) as themselves. A code the
 * client chose is one `client` bucket: a client may pick any of 4,000
 * numbers, each a new series, including the node's own 4004 or 4008; except
 * 1000, a normal closure, which means the same whoever sends it (and is what
 * a Socket.IO client's goodbye is counted as).
 */
export const disconnectLabel = (x: ConnectionClose): string => !x.byClient || x.code === CloseCodes.NORMAL ? String(x.code) : 'client'
/**
 * A handshake refused before the upgrade (or before Socket.IO's connect), for whatever reason.
 * `userId`: the user the token proved (a refusal after the token was verified: role, revocation, limit).
 * `token`: why a token was refused (TOKEN_INVALID, TOKEN_EXPIRED), never the token itself.
 */
export interface HandshakeRefused extends OnNode { endpoint: 'events' | 'admin' | 'health' | 'socket.io', code: ErrorCode, ip: string, userId?: string, token?: TokenRefusal, log: FastifyBaseLogger }
/** `serverId`: the publishing node's, or the publisher library's own name for a direct publish. */
export interface EventPublished extends OnNode { kind: 'event' | 'notification', type: string, id: string }
export interface EventDelivered extends OnNode { kind: 'event' | 'notification', type: string, recipients: number, latencyMs: number }
export interface AuthFailure extends OnNode { endpoint: string, reason: string }
export interface MessageIn extends OnNode { endpoint: 'events' | 'admin', type: string }
export interface BackendState extends OnNode { healthy: boolean, backend: string, log: FastifyBaseLogger }
/**
 * A connection or a frame refused by a limit of `limit` (connections, or messages a minute).
 * `userId`: whose (absent for a guest); `connectionId`: the connection a frame came on, or the one that was refused.
 */
export interface RateLimitHit extends OnNode { scope: 'connection-ip' | 'connection-user' | 'message-ip' | 'message-user', limit: number, ip: string, userId?: string, connectionId: string, endpoint: 'events' | 'admin', transport: string }
/** A connection admitted under `evict-oldest` pushed out its user's oldest (closed 4003 by the node holding it). */
export interface ConnectionEvicted extends OnNode { userId: string, limit: number, ip: string, connectionId: string, endpoint: 'events' | 'admin', transport: string, evicted: { connectionId: string, serverId: string } }
/** A frame of an open connection answered with an `error` (each one a strike toward the 4029 close). */
export interface FrameRefused extends OnNode { endpoint: 'events' | 'admin', transport: string, connectionId: string, userId: string, guest: boolean, ip: string, code: ErrorCode }
/** What became of the gateway's own events (src/gateway-events/): published, or suppressed and why. */
export interface GatewayEventOutcome extends OnNode { type: string, outcome: 'published' | 'folded' | 'node_rate' | 'backend', count: number }
export interface ProbeResult extends OnNode { ok: boolean, latencyMs: number }
/** Why a message from Redis was not delivered: nested past the limit, not an envelope (or JSON that does not parse), a failure handling it, or shed past saturation. */
export type DropReason = 'too_deep' | 'malformed' | 'error' | 'overload'
/** One message from Redis refused by the node (overload sheds are reported by `overload`). */
export interface MessageDropped extends OnNode { reason: Exclude<DropReason, 'overload'>, channel: string, error?: unknown, log: FastifyBaseLogger }
/** Delivering to one connection threw; the connection is closed 1011. */
export interface DeliveryFailed extends OnNode { endpoint: 'events' | 'admin', transport: string, connectionId: string, error: unknown, log: FastifyBaseLogger }
/** Past saturation: shedding (at most every few seconds while it lasts, `shed` since the last report), or caught up. */
export interface Overload extends OnNode { shedding: boolean, shed: number, waiting: number, lagMs: number, log: FastifyBaseLogger }

/** A `subscribe` with `since` replayed what the connection missed: recovered in full, or not (the streams that were not). */
export interface Resumed extends OnNode { endpoint: 'events' | 'admin', connectionId: string, recovered: boolean, unrecovered: string[] }

/** One attempt to deliver a webhook, and what became of the delivery: delivered, tried again later, or a dead letter. */
export interface WebhookAttempt extends OnNode { endpointId: string, webhookId: string, attempt: number, outcome: string, status?: number, durationMs: number, result: 'delivered' | 'retry' | 'dead', log: FastifyBaseLogger }
/** The webhook queues as this node last read them (cluster-wide figures, sampled every few seconds). */
export interface WebhookQueues extends OnNode { endpoints: Array<{ endpointId: string, depth: number, oldestAgeMs: number, breaker: 'closed' | 'open' | 'half-open' }> }
/** An endpoint's deliveries stopped (disabled on a 410, or its breaker opened) or resumed. */
export interface WebhookState extends OnNode { endpointId: string, change: 'gone' | 'opened' | 'recovered', log: FastifyBaseLogger }

export const channels = {
  connectionOpen: diagnostics.channel('herald:connection:open'),
  connectionClose: diagnostics.channel('herald:connection:close'),
  eventPublished: diagnostics.channel('herald:event:published'),
  eventDelivered: diagnostics.channel('herald:event:delivered'),
  /** API credential refusals; handshake refusals are on handshakeRefused */
  authFailure: diagnostics.channel('herald:auth:failure'),
  handshakeRefused: diagnostics.channel('herald:handshake:refused'),
  messageIn: diagnostics.channel('herald:message:in'),
  backendState: diagnostics.channel('herald:backend:state'),
  rateLimit: diagnostics.channel('herald:ratelimit'),
  connectionEvicted: diagnostics.channel('herald:connection:evicted'),
  frameRefused: diagnostics.channel('herald:frame:refused'),
  gatewayEvents: diagnostics.channel('herald:gateway-events'),
  probe: diagnostics.channel('herald:backend:probe'),
  messageDropped: diagnostics.channel('herald:message:dropped'),
  deliveryFailed: diagnostics.channel('herald:delivery:failed'),
  overload: diagnostics.channel('herald:delivery:overload'),
  resumed: diagnostics.channel('herald:stream:resumed'),
  webhookAttempt: diagnostics.channel('herald:webhook:attempt'),
  webhookQueues: diagnostics.channel('herald:webhook:queues'),
  webhookState: diagnostics.channel('herald:webhook:state'),
} as const
