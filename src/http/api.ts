import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import { statsReply } from '../admin/stats.js'
import type { EventInput, NotificationInput } from '../events/model.js'
import * as actions from '../admin/actions.js'
import { errorBody, HeraldError } from '../errors.js'
import { readHistory } from '../events/history.js'
import { receipt, receiptJson } from '../events/publisher.js'
import { DEFAULT_PAGE, MAX_BATCH_BYTES } from '../protocol/schema.js'
import { parseStream, streamName } from '../protocol/streams.js'
import { Accepted, BatchAccepted, ConnectionParams, Connections, EventBatchBody, EventBody, NotificationBody, Revoked, SessionParams, Stats, StreamPage, StreamParams, StreamQuery, UserParams } from './schemas.js'
import { serviceAuth } from './service-auth.js'

/** The OpenAPI security and refusals every service route declares. */
export const security = [{ bearer: [] }]
export const errors = { 400: { $ref: 'ErrorReply#' }, 401: { $ref: 'ErrorReply#' }, 403: { $ref: 'ErrorReply#' }, 503: { $ref: 'ErrorReply#' } }

/** The HTTP API: publishing for backend services, operator actions and stats (docs/protocol.md, README.md HTTP API). */
export default fp(async function api (app) {
  const h = app.herald
  const asService = serviceAuth(h, ['service'])
  const asServiceOrAdmin = serviceAuth(h, ['service', 'admin'])
  app.decorateRequest('actor', null)
  // A service may publish thousands a second: at info, two lines each
  // (incoming, completed) cost the node more CPU than the publish itself
  // (bench/publish.ts, HERALD_LOG_LEVEL=info) and flood the log with what
  // the metrics count. The publish routes log their requests from debug; at
  // info, only their warnings and errors. Other levels apply as set.
  const publishLog = h.config.logLevel === 'info' ? { logLevel: 'warn' as const } : {}

  app.post<{ Body: Static<typeof EventBody> }>('/api/events', {
    ...publishLog,
    schema: { summary: 'Publish an event', tags: ['events'], security, body: EventBody, response: { 202: Accepted, ...errors } },
    onRequest: asService,
  }, async (req, reply) => {
    return reply.code(202).send(receipt(await h.publisher.publishEvent(req.body as EventInput)))
  })

  app.post<{ Body: Static<typeof EventBatchBody> }>('/api/events/batch', {
    ...publishLog,
    schema: { summary: 'Publish up to 500 events in one request: each checked and published as POST /api/events would, answered in order', tags: ['events'], security, body: EventBatchBody, response: { 200: BatchAccepted, ...errors } },
    bodyLimit: MAX_BATCH_BYTES,
    onRequest: asService,
  }, async (req, reply) => {
    const results = await h.publisher.publishEvents(req.body.events as EventInput[])
    const failed = results.filter((r) => r instanceof HeraldError)
    // Nothing published, and all for the one reason the backend gave: the
    // whole batch can be sent again, as a single publish answered 503 would.
    if (failed.length === results.length && failed.every((e) => e.code === 'BACKEND_UNAVAILABLE')) throw failed[0]!
    // Built here: the serializer would try each branch of the union per result.
    const body = results.map((r) => r instanceof HeraldError ? JSON.stringify(errorBody(r.code, r.message)) : receiptJson(r)).join(',')
    return reply.code(200).type('application/json; charset=utf-8')
      .send(`{"published":${results.length - failed.length},"failed":${failed.length},"results":[${body}]}`)
  })

  app.post<{ Params: Static<typeof UserParams>, Body: Static<typeof NotificationBody> }>('/api/notifications/users/:userId', {
    ...publishLog,
    schema: { summary: 'Notify every /ws/events connection of one user', tags: ['notifications'], security, params: UserParams, body: NotificationBody, response: { 202: Accepted, ...errors } },
    onRequest: asService,
  }, async (req, reply) => {
    return reply.code(202).send(receipt(await h.publisher.publishNotification(req.body as NotificationInput, req.params.userId)))
  })

  app.post<{ Body: Static<typeof NotificationBody> }>('/api/notifications/broadcast', {
    schema: { summary: 'Notify every /ws/events connection in the cluster (service, or an operator: audited as admin.notification.broadcast)', tags: ['notifications'], security, body: NotificationBody, response: { 202: Accepted, ...errors } },
    // An operator action as on /ws/admin (admin/actions.ts), so an admin JWT may broadcast too.
    onRequest: asServiceOrAdmin,
  }, async (req, reply) => {
    return reply.code(202).send(await actions.broadcast(h, req.actor!, req.body as NotificationInput))
  })

  app.post<{ Params: Static<typeof SessionParams> }>('/api/sessions/:sessionId/revoke', {
    schema: { summary: 'Revoke a session everywhere: refused on connect, disconnected (4004) within a second', tags: ['revocation'], security, params: SessionParams, response: { 200: Revoked, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req) => await actions.revoke(h, req.actor!, { kind: 'session', sessionId: req.params.sessionId, at: Date.now() }))

  app.post<{ Params: Static<typeof UserParams> }>('/api/users/:userId/revoke', {
    schema: { summary: "Revoke every token of a user issued up to now, on every node", tags: ['revocation'], security, params: UserParams, response: { 200: Revoked, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req) => await actions.revoke(h, req.actor!, { kind: 'user', userId: req.params.userId, at: Date.now() }))

  app.get<{ Params: Static<typeof UserParams> }>('/api/users/:userId/connections', {
    schema: { summary: "A user's open connections on every node", tags: ['admin'], security, params: UserParams, response: { 200: Connections, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req) => ({ userId: req.params.userId, connections: await actions.listConnections(h, req.params.userId) }))

  app.post<{ Params: Static<typeof ConnectionParams> }>('/api/connections/:connectionId/disconnect', {
    schema: { summary: 'Close one connection (4003), on whatever node holds it', tags: ['admin'], security, params: ConnectionParams, response: { 202: { type: 'object', properties: { connectionId: { type: 'string' } } }, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req, reply) => {
    await actions.disconnectConnection(h, req.actor!, req.params.connectionId)
    return reply.code(202).send({ connectionId: req.params.connectionId })
  })

  app.post<{ Params: Static<typeof UserParams> }>('/api/users/:userId/disconnect', {
    schema: { summary: 'Close every connection of a user (4003) on every node; tokens stay valid', tags: ['admin'], security, params: UserParams, response: { 202: { type: 'object', properties: { userId: { type: 'string' } } }, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req, reply) => {
    await actions.disconnectUser(h, req.actor!, req.params.userId)
    return reply.code(202).send({ userId: req.params.userId })
  })

  app.get<{ Params: Static<typeof StreamParams>, Querystring: Static<typeof StreamQuery> }>('/api/streams/:stream/events', {
    schema: { summary: "A stream's retained events and notifications after an offset, a page at a time (service catch-up)", tags: ['streams'], security, params: StreamParams, querystring: StreamQuery, response: { 200: StreamPage, 404: { $ref: 'ErrorReply#' }, ...errors } },
    onRequest: asService,
  }, async (req, reply) => {
    const streams = h.backend.streams
    if (streams === null) throw new HeraldError('HISTORY_OFF')
    const stream = parseStream(req.params.stream)
    if (stream === null) throw new HeraldError('UNKNOWN_STREAM')
    const after = Number(req.query.after ?? 0)
    const limit = Number(req.query.limit ?? DEFAULT_PAGE)
    const page = await actions.withBackend(h, 'reading the stream', async () => await readHistory(streams, h.channels, stream, after, limit))
    // The payloads are kept as the JSON clients receive, not parsed and serialised again.
    const events = page.messages.map((m) => m.json).join(',')
    const next = page.next === null ? '' : `,"next":${page.next}`
    return reply.code(200).type('application/json; charset=utf-8')
      .send(`{"stream":${JSON.stringify(streamName(stream))},"epoch":${JSON.stringify(page.epoch)},"top":${page.top},"events":[${events}]${next}}`)
  })

  app.get('/api/stats', {
    schema: { summary: 'This node and the whole cluster (global is null, with globalError, while the cluster backend is unreachable)', tags: ['stats'], security, response: { 200: Stats, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async () => await statsReply(h))
}, { name: 'herald-api' })
