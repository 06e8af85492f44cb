import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ConnectionRecord } from '../limits/connection-limiter.js'
import { tokenFrom } from '../auth/credentials.js'
import type { Identity } from '../auth/verifier.js'
import type { Herald } from '../context.js'
import { errorBody, HeraldError, type ErrorCode } from '../errors.js'
import { channels as diag } from '../observability/channels.js'

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null
    /** minted at admission; names the connection's slot in the cluster-wide limits */
    connectionId: string | null
  }
}

/** The identity of an anonymous guest (ALLOW_ANONYMOUS): no token, no expiry, broadcast audience only. */
export const guestIdentity = (connectionId: string): Identity =>
  ({ userId: `guest:${connectionId}`, sessionId: null, roles: [], expiresAt: Infinity, issuedAt: null, anonymous: true })

// The slot a socket holds, released by one shared 'close' listener: a closure
// per connection (made in the guard, it would keep the request and reply alive
// too) and a once() wrapper cost a few hundred bytes on every idle connection.
const kSlot = Symbol('herald.slot')
interface Slot { readonly h: Herald, readonly record: ConnectionRecord }
type SlotSocket = Socket & { [kSlot]?: Slot }

function releaseSlot (this: Socket): void {
  const slot = (this as SlotSocket)[kSlot]
  if (slot === undefined) return
  ;(this as SlotSocket)[kSlot] = undefined
  const { h, record } = slot
  h.connectionLimiter.release(record).catch((err: Error) => h.log.warn({ err: { message: err.message }, connectionId: record.connectionId }, 'could not release connection slot'))
}

function releaseOnClose (socket: Socket, h: Herald, record: ConnectionRecord): void {
  ;(socket as SlotSocket)[kSlot] = { h, record }
  if (socket.destroyed) releaseSlot.call(socket)
  else socket.on('close', releaseSlot)
}

/** Retry-After on a connection-limit refusal: a slot frees only when another connection closes. */
const CONNECTION_RETRY_AFTER_S = 5

/**
 * Runs before the 101: every refusal is a plain HTTP response with a JSON body
 * (brief §4), so clients and load balancers see a status, not a dropped socket.
 */
export function upgradeGuard (h: Herald, endpoint: 'events' | 'admin', requiredRole?: string) {
  return async function guard (req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!req.ws) return // plain GET: the route answers 426
    const refuse = (code: ErrorCode, message?: string): FastifyReply => {
      if (diag.handshakeRefused.hasSubscribers) diag.handshakeRefused.publish({ endpoint, code, log: req.log })
      return reply.code(new HeraldError(code).statusCode).send(errorBody(code, message))
    }
    if (h.draining) return void refuse('DRAINING')
    if (!h.probe.healthy) return void refuse('BACKEND_UNAVAILABLE')
    if (!h.originAllowed(req.headers.origin)) return void refuse('ORIGIN_FORBIDDEN')
    const token = tokenFrom(req.headers, req.query)
    const connectionId = randomUUID()
    let identity: Identity
    if (token === undefined) {
      if (!h.config.allowAnonymous || endpoint !== 'events') return void refuse('TOKEN_MISSING')
      identity = guestIdentity(connectionId)
    } else {
      try {
        identity = await h.verifier.verify(token)
      } catch (err) {
        if (err instanceof HeraldError) return void refuse(err.code, err.message)
        throw err
      }
    }
    if (requiredRole !== undefined && !identity.roles.includes(requiredRole)) return void refuse('ROLE_FORBIDDEN')
    if (h.connections.size >= h.config.limits.nodeConnections) return void refuse('NODE_FULL')
    if (identity.anonymous !== true && await h.revocations.check(identity) !== null) return void refuse('SESSION_REVOKED')

    const record = { serverId: h.config.serverId, connectionId, userId: identity.userId, sessionId: identity.sessionId, ip: req.ip, endpoint, openedAt: Date.now() }
    const admission = await h.connectionLimiter.acquire(record)
    if (!admission.ok) {
      if (diag.rateLimit.hasSubscribers) diag.rateLimit.publish({ scope: admission.scope === 'ip' ? 'connection-ip' : 'connection-user' })
      reply.header('retry-after', String(CONNECTION_RETRY_AFTER_S))
      return void refuse('CONNECTION_LIMIT', `at most ${admission.limit} open connections per ${admission.scope === 'ip' ? 'IP address' : 'user'}`)
    }
    // The slot is held exactly as long as the TCP socket: released whether the
    // handshake completes or not, and whoever closes the connection.
    releaseOnClose(req.raw.socket, h, record)
    if (admission.evicted !== null) {
      h.publisher.publishControl('evict', admission.evicted, null).catch((err: Error) => req.log.warn({ err: { message: err.message } }, 'could not evict the oldest connection'))
    }
    req.identity = identity
    req.connectionId = connectionId
  }
}
