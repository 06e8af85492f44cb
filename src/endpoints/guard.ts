import type { FastifyReply, FastifyRequest } from 'fastify'
import { tokenFrom } from '../auth/credentials.js'
import type { Identity } from '../auth/verifier.js'
import type { Herald } from '../context.js'
import { errorBody, HeraldError, type ErrorCode } from '../errors.js'
import { channels as diag } from '../observability/channels.js'

declare module 'fastify' {
  interface FastifyRequest { identity: Identity | null }
}

/**
 * Runs before the 101: every refusal is a plain HTTP response with a JSON body
 * (brief §4), so clients and load balancers see a status, not a dropped socket.
 */
export function upgradeGuard (h: Herald, endpoint: 'events' | 'admin', requiredRole?: string) {
  return async function guard (req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!req.ws) return // plain GET: the route answers 426
    const refuse = (code: ErrorCode, message?: string): FastifyReply => {
      if (diag.authFailure.hasSubscribers) diag.authFailure.publish({ endpoint, reason: code })
      req.log.info({ endpoint, code }, 'upgrade refused')
      return reply.code(new HeraldError(code).statusCode).send(errorBody(code, message))
    }
    if (h.draining) return void refuse('DRAINING')
    if (!h.broker.healthy) return void refuse('BACKEND_UNAVAILABLE')
    if (!h.originAllowed(req.headers.origin)) return void refuse('ORIGIN_FORBIDDEN')
    const token = tokenFrom(req.headers, req.query)
    if (token === undefined) return void refuse('TOKEN_MISSING')
    let identity: Identity
    try {
      identity = await h.verifier.verify(token)
    } catch (err) {
      if (err instanceof HeraldError) return void refuse(err.code, err.message)
      throw err
    }
    if (requiredRole !== undefined && !identity.roles.includes(requiredRole)) return void refuse('ROLE_FORBIDDEN')
    if (h.connections.size >= h.config.limits.nodeConnections) return void refuse('NODE_FULL')
    req.identity = identity
  }
}
