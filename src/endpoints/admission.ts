import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { isOwnOrigin } from '../auth/origin.js'
import { TokenRefused, type Identity, type TokenRefusal } from '../auth/verifier.js'
import type { Herald } from '../context.js'
import { HeraldError, type ErrorCode } from '../errors.js'
import type { ConnectionRecord } from '../limits/connection-limiter.js'
import type { Refusing, Turned } from './handshake-gate.js'
import { channels as diag } from '../observability/channels.js'
import type { Endpoint, Transport } from './connection.js'

// The handshake checks of every client connection, raw WebSocket or
// Socket.IO, in one place and in the order docs/protocol.md's handshake
// table gives: the node's own state, the Origin, the token, the role, the
// node's capacity, revocation, then a slot under the cluster-wide limits.
// The admin dashboard's sign-in (src/dashboard) runs the same checks but the
// slot, so a page is told why its token would be refused before the
// browser's WebSocket, which shows no refusal, is opened.

/** A client asking to connect, as its transport read it. */
export interface AdmissionRequest {
  endpoint: Endpoint
  transport: Transport
  origin: string | undefined
  /**
   * The origin the request was sent to (requestOrigin in src/auth/origin.ts):
   * on /ws/admin, a browser Origin equal to it is accepted whatever
   * ALLOWED_ORIGINS says, since it is a page this node served (the dashboard).
   */
  ownOrigin?: string | null
  /** the bearer token, wherever the transport found it; undefined: none given */
  token: string | undefined
  ip: string
  /** where refusals are logged (the upgrade request's logger, or the node's) */
  log: FastifyBaseLogger
  /** whether the client has left: asked while it waits for a place (src/endpoints/handshake-gate.ts), so a client that gave up costs no slot */
  gone?: () => boolean
}

/** A refusal, whatever asked. */
export interface Refused {
  ok: false
  code: ErrorCode
  message?: string
  /** seconds, for a refusal that clears only when something else changes (a slot frees) */
  retryAfter?: number
  /** a condition of this node, not of the client (draining, backend unreachable, full): another node may take it */
  elsewhere: boolean
}

export type Admission = { ok: true, identity: Identity, record: ConnectionRecord } | Refused

/** Every check of the handshake but the slot: who the client is, and that this node would take it now. */
export type Vetting = { ok: true, identity: Identity, connectionId: string } | Refused

/** The role /ws/admin requires. */
export const ADMIN_ROLE = 'admin'
/** Retry-After on a connection-limit refusal: a slot frees only when another connection closes. */
export const CONNECTION_RETRY_AFTER_S = 5

/** The identity of an anonymous guest (ALLOW_ANONYMOUS): no token, no expiry, broadcast audience only. */
export const guestIdentity = (connectionId: string): Identity =>
  ({ userId: `guest:${connectionId}`, sessionId: null, roles: [], expiresAt: Infinity, issuedAt: null, anonymous: true })

/** Why this node cannot take a connection now, whoever asks; `capacity` adds the node's connection cap. */
export function nodeRefusal (h: Herald, capacity: boolean): Refusing | null {
  if (h.draining) return 'DRAINING'
  if (!h.probe.healthy) return 'BACKEND_UNAVAILABLE'
  if (capacity && h.connections.size >= h.config.limits.nodeConnections) return 'NODE_FULL'
  return null
}

/** `userId`: the user the token proved, when it was verified; `token`: why the token was refused. Both for the diagnostics channel only. */
type Refuse = (code: ErrorCode, opts?: { message?: string, retryAfter?: number, elsewhere?: boolean, userId?: string, token?: TokenRefusal }) => Refused

/** Refusals are published (metrics count them by code) under the endpoint the client asked for. */
function refuser (h: Herald, req: AdmissionRequest): Refuse {
  const label = req.transport === 'socket.io' ? 'socket.io' : req.endpoint
  return (code, opts = {}) => {
    if (diag.handshakeRefused.hasSubscribers) {
      diag.handshakeRefused.publish({ serverId: h.config.serverId, endpoint: label, code, ip: req.ip, ...(opts.userId !== undefined ? { userId: opts.userId } : {}), ...(opts.token !== undefined ? { token: opts.token } : {}), log: req.log })
    }
    return { ok: false, code, ...(opts.message !== undefined ? { message: opts.message } : {}), ...(opts.retryAfter !== undefined ? { retryAfter: opts.retryAfter } : {}), elsewhere: opts.elsewhere === true }
  }
}

/** The Origin rule: ALLOWED_ORIGINS, or, on /ws/admin only, the request's own origin (a page this node served). */
export function originAccepted (h: Herald, req: Pick<AdmissionRequest, 'endpoint' | 'origin' | 'ownOrigin'>): boolean {
  return h.originAllowed(req.origin) || (req.endpoint === 'admin' && isOwnOrigin(req.origin, req.ownOrigin ?? null))
}

/**
 * Every check of the handshake before the backend's: whether this node
 * takes connections, the Origin, the token, the role, the node's capacity,
 * and the revocations this node knows.
 */
async function identify (h: Herald, req: AdmissionRequest, refuse: Refuse): Promise<Vetting> {
  const busy = nodeRefusal(h, false)
  if (busy !== null) return refuse(busy, { elsewhere: true })
  if (!originAccepted(h, req)) return refuse('ORIGIN_FORBIDDEN')
  const connectionId = randomUUID()
  let identity: Identity
  if (req.token === undefined) {
    if (!h.config.allowAnonymous || req.endpoint !== 'events') return refuse('TOKEN_MISSING')
    identity = guestIdentity(connectionId)
  } else {
    try {
      identity = await h.verifier.verify(req.token)
    } catch (err) {
      if (err instanceof HeraldError) return refuse(err.code, { message: err.message, ...(err instanceof TokenRefused ? { token: err.reason } : {}) })
      throw err
    }
  }
  const who = identity.anonymous === true ? {} : { userId: identity.userId }
  if (req.endpoint === 'admin' && !identity.roles.includes(ADMIN_ROLE)) return refuse('ROLE_FORBIDDEN', who)
  // Draining and the backend again: either may have come true while the token was checked.
  const full = nodeRefusal(h, true)
  if (full !== null) return refuse(full, { elsewhere: true })
  if (identity.anonymous !== true && h.revocations.known(identity) !== null) return refuse('SESSION_REVOKED', who)
  return { ok: true, identity, connectionId }
}

/**
 * Every check of the handshake but the slot, in the handshake's order:
 * whether this node takes connections, the Origin, the token, the role, the
 * node's capacity, revocation. Backend faults while checking revocations are thrown.
 */
export async function vet (h: Herald, req: AdmissionRequest): Promise<Vetting> {
  const refuse = refuser(h, req)
  const v = await identify(h, req, refuse)
  if (!v.ok || v.identity.anonymous === true) return v
  if (await h.revocations.check(v.identity) !== null) return refuse('SESSION_REVOKED', { userId: v.identity.userId })
  return v
}

/**
 * Admits a connection or says why not. Admitted, it holds a slot under the
 * cluster-wide limits: the caller ties the slot to its transport and gives
 * it back with `releaseSlot` when that closes. A connection to /ws/events
 * also holds a place among the node's handshakes in flight from its token
 * check to its `welcome` (src/endpoints/handshake-gate.ts), waiting for one
 * if none is free; `releaseSlot` gives it back too. The store's revocation check
 * and the slot are one step, batched with the other connections of the
 * event-loop turn (src/limits/connection-limiter.ts). Backend faults while
 * checking revocations or taking the slot are thrown.
 */
export async function admit (h: Herald, req: AdmissionRequest): Promise<Admission> {
  const refuse = refuser(h, req)
  const v = await identify(h, req, refuse)
  if (!v.ok) return v
  const { identity, connectionId } = v
  const who = identity.anonymous === true ? {} : { userId: identity.userId }
  // A place among the handshakes in flight (src/endpoints/handshake-gate.ts),
  // held until the welcome; /ws/admin does not wait for one.
  const counted = req.endpoint === 'events'
  if (counted) {
    const place = h.handshakes.enter(connectionId, req.ip, req.gone)
    if (place !== null) {
      const turned = await place
      if (turned !== null) return turnedAway(h, req, refuse, turned, connectionId, who)
      // What may have come true while it waited: a drain, the backend lost, the node full.
      const full = nodeRefusal(h, true)
      if (full !== null) {
        h.handshakes.end(connectionId)
        return refuse(full, { elsewhere: true, ...who })
      }
    }
  }
  try {
    const a = await take(h, req, refuse, identity, connectionId, who)
    if (!a.ok && counted) h.handshakes.end(connectionId)
    return a
  } catch (err) {
    if (counted) h.handshakes.end(connectionId)
    throw err
  }
}

/** The answer to a handshake given no place among those in flight. */
function turnedAway (h: Herald, req: AdmissionRequest, refuse: Refuse, turned: Turned, connectionId: string, who: { userId?: string }): Refused {
  switch (turned) {
    case 'gone':
      // Nobody to answer, and nothing to count: the client gave up.
      return { ok: false, code: 'INTERNAL', message: 'the client left during the handshake', elsewhere: false }
    case 'ip': {
      const limit = h.config.limits.connectionsPerIp
      if (diag.rateLimit.hasSubscribers) {
        diag.rateLimit.publish({ serverId: h.config.serverId, scope: 'connection-ip', limit, ip: req.ip, ...who, connectionId, endpoint: req.endpoint, transport: req.transport })
      }
      return refuse('CONNECTION_LIMIT', { message: `at most ${limit} connections per IP address at once, open or being opened`, retryAfter: CONNECTION_RETRY_AFTER_S, ...who })
    }
    case 'queue':
      return refuse('NODE_FULL', { message: 'this node is busy: too many handshakes are waiting; connect to another', elsewhere: true, ...who })
    case 'waited': {
      const now = nodeRefusal(h, true)
      if (now !== null) return refuse(now, { elsewhere: true, ...who })
      return refuse('NODE_FULL', { message: `this node is busy: no place among its handshakes within ${Math.round(h.config.handshakeTimeoutMs / 2)} ms; connect to another`, elsewhere: true, ...who })
    }
    default:
      return refuse(turned, { elsewhere: true, ...who })
  }
}

/** The slot under the cluster-wide limits, with the store's revocation check. */
async function take (h: Herald, req: AdmissionRequest, refuse: Refuse, identity: Identity, connectionId: string, who: { userId?: string }): Promise<Admission> {
  const record: ConnectionRecord = { serverId: h.config.serverId, connectionId, userId: identity.userId, sessionId: identity.sessionId, ip: req.ip, endpoint: req.endpoint, openedAt: Date.now() }
  const slot = await h.connectionLimiter.acquire(record, identity.anonymous === true ? null : identity)
  if (!slot.ok) {
    if ('revoked' in slot) return refuse('SESSION_REVOKED', who)
    if (diag.rateLimit.hasSubscribers) {
      diag.rateLimit.publish({ serverId: h.config.serverId, scope: slot.scope === 'ip' ? 'connection-ip' : 'connection-user', limit: slot.limit, ip: req.ip, ...who, connectionId, endpoint: req.endpoint, transport: req.transport })
    }
    return refuse('CONNECTION_LIMIT', { message: `at most ${slot.limit} open connections per ${slot.scope === 'ip' ? 'IP address' : 'user'}`, retryAfter: CONNECTION_RETRY_AFTER_S, ...who })
  }
  if (slot.evicted !== null) {
    const evicted = slot.evicted
    if (diag.connectionEvicted.hasSubscribers) {
      diag.connectionEvicted.publish({ serverId: h.config.serverId, userId: identity.userId, limit: h.config.limits.connectionsPerUser, ip: req.ip, connectionId, endpoint: req.endpoint, transport: req.transport, evicted: { connectionId: evicted.connectionId, serverId: evicted.serverId } })
    }
    // The eviction list has it too: the holder's node closes it at its next sync.
    h.publisher.publishControl('evict', evicted, null).catch((err: Error) => {
      h.log.warn({ err: { message: err.message }, connectionId, userId: identity.userId, evictedConnectionId: evicted.connectionId, evictedServerId: evicted.serverId }, 'could not publish the eviction of the oldest connection')
    })
  }
  return { ok: true, identity, record }
}

/**
 * Gives an admitted connection's slot back, and its place among the
 * handshakes in flight if it holds one and was not opened yet (its
 * transport closed first); a failure is logged with the connection's ids.
 */
export function releaseSlot (h: Herald, record: ConnectionRecord): void {
  h.handshakes.transportClosed(record.connectionId)
  h.connectionLimiter.release(record).catch((err: Error) => {
    h.log.warn({ err: { message: err.message }, connectionId: record.connectionId, userId: record.userId }, 'could not release connection slot')
  })
}
