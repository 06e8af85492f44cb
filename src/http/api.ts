import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import { clusterStats, serverStats } from '../admin/stats.js'
import type { EventInput, NotificationInput } from '../events/model.js'
import type { Revocation } from '../auth/revocation.js'
import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import { Accepted, EventBody, NotificationBody, Revoked, SessionParams, UserParams } from './schemas.js'
import { serviceAuth } from './service-auth.js'

const security = [{ bearer: [] }]
const errors = { 400: { $ref: 'ErrorReply#' }, 401: { $ref: 'ErrorReply#' }, 403: { $ref: 'ErrorReply#' }, 503: { $ref: 'ErrorReply#' } }

/** The publish API for backend services (brief §3). */
export default fp(async function api (app) {
  const h = app.herald
  const asService = serviceAuth(h, ['service'])
  const asServiceOrAdmin = serviceAuth(h, ['service', 'admin'])

  app.post<{ Body: Static<typeof EventBody> }>('/api/events', {
    schema: { summary: 'Publish an event', tags: ['events'], security, body: EventBody, response: { 202: Accepted, ...errors } },
    preHandler: asService,
  }, async (req, reply) => {
    const e = await h.publisher.publishEvent(req.body as EventInput)
    return reply.code(202).send({ id: e.id })
  })

  app.post<{ Params: Static<typeof UserParams>, Body: Static<typeof NotificationBody> }>('/api/notifications/users/:userId', {
    schema: { summary: 'Notify every /ws/events connection of one user', tags: ['notifications'], security, params: UserParams, body: NotificationBody, response: { 202: Accepted, ...errors } },
    preHandler: asService,
  }, async (req, reply) => {
    const n = await h.publisher.publishNotification(req.body as NotificationInput, req.params.userId)
    return reply.code(202).send({ id: n.id })
  })

  app.post<{ Body: Static<typeof NotificationBody> }>('/api/notifications/broadcast', {
    schema: { summary: 'Notify every /ws/events connection in the cluster', tags: ['notifications'], security, body: NotificationBody, response: { 202: Accepted, ...errors } },
    preHandler: asService,
  }, async (req, reply) => {
    const n = await h.publisher.publishNotification(req.body as NotificationInput, null)
    return reply.code(202).send({ id: n.id })
  })

  app.post<{ Params: Static<typeof SessionParams> }>('/api/sessions/:sessionId/revoke', {
    schema: { summary: 'Revoke a session everywhere: refused on connect, disconnected (4004) within a second', tags: ['revocation'], security, params: SessionParams, response: { 200: Revoked, ...errors } },
    preHandler: asServiceOrAdmin,
  }, async (req) => await revoke(h, { kind: 'session', sessionId: req.params.sessionId, at: Date.now() }))

  app.post<{ Params: Static<typeof UserParams> }>('/api/users/:userId/revoke', {
    schema: { summary: "Revoke every token of a user issued up to now, on every node", tags: ['revocation'], security, params: UserParams, response: { 200: Revoked, ...errors } },
    preHandler: asServiceOrAdmin,
  }, async (req) => await revoke(h, { kind: 'user', userId: req.params.userId, at: Date.now() }))

  app.get('/api/stats', {
    schema: { summary: 'This node and the whole cluster', tags: ['stats'], security },
    preHandler: asServiceOrAdmin,
  }, async () => ({ server: serverStats(h), global: await clusterStats(h) }))
}, { name: 'herald-api' })

/** Durable first (new connections everywhere refuse it), then the live disconnects. */
async function revoke (h: Herald, r: Revocation): Promise<{ revoked: 'session' | 'user', id: string, revokedAt: string }> {
  // A revocation that cannot be stored must fail loudly, not wait for Redis.
  if (!h.broker.healthy) throw new HeraldError('BACKEND_UNAVAILABLE', 'the revocation could not be stored: backend unreachable')
  await h.revocations.revoke(r)
  await h.publisher.publishControl('revoke', r, null)
  return { revoked: r.kind, id: r.kind === 'session' ? r.sessionId : r.userId, revokedAt: new Date(r.at).toISOString() }
}
