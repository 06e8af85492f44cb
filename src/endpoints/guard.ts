import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ConnectionRecord } from '../limits/connection-limiter.js'
import { tokenFrom } from '../auth/credentials.js'
import { requestOrigin } from '../auth/origin.js'
import type { Identity } from '../auth/verifier.js'
import type { Herald } from '../context.js'
import { errorBody, HeraldError } from '../errors.js'
import { admit, releaseSlot } from './admission.js'
import type { Endpoint } from './connection.js'

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null
    /** minted at admission; names the connection's slot in the cluster-wide limits */
    connectionId: string | null
  }
}

// The slot a socket holds, released by one shared 'close' listener: a closure
// per connection (made in the guard, it would keep the request and reply alive
// too) and a once() wrapper cost a few hundred bytes on every idle connection.
const kSlot = Symbol('herald.slot')
interface Slot { readonly h: Herald, readonly record: ConnectionRecord }
type SlotSocket = Socket & { [kSlot]?: Slot }

function onSocketClose (this: Socket): void {
  const slot = (this as SlotSocket)[kSlot]
  if (slot === undefined) return
  ;(this as SlotSocket)[kSlot] = undefined
  releaseSlot(slot.h, slot.record)
}

function releaseOnClose (socket: Socket, h: Herald, record: ConnectionRecord): void {
  ;(socket as SlotSocket)[kSlot] = { h, record }
  if (socket.destroyed) onSocketClose.call(socket)
  else socket.on('close', onSocketClose)
}

/**
 * Runs before the 101: every refusal is a plain HTTP response with a JSON
 * body, so clients and load balancers see a status and a code, not a dropped
 * socket. The checks are the one admission (admission.ts) Socket.IO runs too.
 */
export function upgradeGuard (h: Herald, endpoint: Endpoint) {
  return async function guard (req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!req.ws) return // plain GET: the route answers 426
    // The client is gone already: in a storm the accept queue holds requests
    // whose clients gave up (their connect timeout) while they waited there.
    // Admitting one would cost a token check, a slot and a subscription in
    // Redis, for nobody.
    const socket = req.raw.socket
    if (socket.destroyed || socket.readableEnded || !socket.writable) {
      socket.destroy()
      return void reply.hijack()
    }
    const a = await admit(h, {
      endpoint,
      transport: 'ws',
      origin: req.headers.origin,
      // Only /ws/admin accepts its own origin (the dashboard this node serves).
      ownOrigin: endpoint === 'admin' ? requestOrigin(req.protocol, req.host) : null,
      token: tokenFrom(req.headers, req.query),
      ip: req.ip,
      log: req.log,
    })
    if (!a.ok) {
      if (a.retryAfter !== undefined) reply.header('retry-after', String(a.retryAfter))
      return void reply.code(new HeraldError(a.code).statusCode).send(errorBody(a.code, a.message))
    }
    // The slot is held exactly as long as the TCP socket: released whether the
    // handshake completes or not, and whoever closes the connection.
    releaseOnClose(req.raw.socket, h, a.record)
    req.identity = a.identity
    req.connectionId = a.record.connectionId
  }
}
