import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import { withBackend } from '../admin/actions.js'
import { DEFAULT_PAGE, DeadLetterQuery, DeadLetters, ReplayBody, Replayed, WebhookAttempts, WebhookCreate, WebhookList, WebhookParams, WebhookPatch, WebhookUpdated, WebhookView, WebhookWithSecret } from '../protocol/schema.js'
import { endpointView, listEndpoints } from '../webhooks/endpoints.js'
import { serviceAuth } from './service-auth.js'

const security = [{ bearer: [] }]
const errors = { 400: { $ref: 'ErrorReply#' }, 401: { $ref: 'ErrorReply#' }, 403: { $ref: 'ErrorReply#' }, 404: { $ref: 'ErrorReply#' }, 503: { $ref: 'ErrorReply#' } }
const tags = ['webhooks']

/** /api/webhooks: endpoints, their recent attempts and dead letters (docs/protocol.md, Webhooks). */
export default fp(async function webhooksApi (app) {
  const h = app.herald
  const w = h.webhooks
  // An operator's tool as much as a service's: the admin dashboard manages them too.
  const auth = serviceAuth(h, ['service', 'admin'])
  const backend = async <T>(what: string, work: () => Promise<T>, ifLate?: string): Promise<T> => await withBackend(h, what, work, ifLate)
  /** A change made here is seen by this node's publishes at once; by the others' within a second. */
  const changed = async (): Promise<void> => { await h.publisher.webhooks.refresh().catch(() => {}) }

  app.post<{ Body: Static<typeof WebhookCreate> }>('/api/webhooks', {
    schema: { summary: 'Create a webhook endpoint (its secret, generated unless given, is in this answer only)', tags, security, body: WebhookCreate, response: { 201: WebhookWithSecret, 409: { $ref: 'ErrorReply#' }, ...errors } },
    onRequest: auth,
  }, async (req, reply) => {
    const { record, secret } = await backend('creating the endpoint', async () => await w.endpoints.create(req.body), 'list the endpoints (GET /api/webhooks) before creating it again: each create makes an endpoint of its own')
    await changed()
    return reply.code(201).send({ ...endpointView(record, Date.now()), secret })
  })

  app.get('/api/webhooks', {
    schema: { summary: 'Every webhook endpoint, with its queue and its latest attempts', tags, security, response: { 200: WebhookList, ...errors } },
    onRequest: auth,
  }, async () => await backend('listing the endpoints', async () => ({ webhooks: await listEndpoints(h.backend.webhooks, Date.now()) })))

  app.get<{ Params: Static<typeof WebhookParams> }>('/api/webhooks/:id', {
    schema: { summary: 'One webhook endpoint, with its queue', tags, security, params: WebhookParams, response: { 200: WebhookView, ...errors } },
    onRequest: auth,
  }, async (req) => await backend('reading the endpoint', async () => {
    const e = await w.endpoints.get(req.params.id)
    const [stats, breakers] = await Promise.all([h.backend.webhooks.stats([e.id]), h.backend.webhooks.breakers()])
    return endpointView(e, Date.now(), { stats: stats.get(e.id)!, breaker: breakers.get(e.id) })
  }))

  app.patch<{ Params: Static<typeof WebhookParams>, Body: Static<typeof WebhookPatch> }>('/api/webhooks/:id', {
    schema: { summary: 'Change a webhook endpoint: URL, patterns, description, enabled, or rotate its secret (both signatures are sent during WEBHOOK_SECRET_OVERLAP)', tags, security, params: WebhookParams, body: WebhookPatch, response: { 200: WebhookUpdated, ...errors } },
    onRequest: auth,
  }, async (req) => {
    const { record, secret } = await backend('changing the endpoint', async () => await w.endpoints.update(req.params.id, req.body),
      req.body.rotateSecret === true ? 'a retry rotates again, to a secret of its own: the one this call generated is never shown' : undefined)
    await changed()
    return { ...endpointView(record, Date.now()), ...(secret !== undefined ? { secret } : {}) }
  })

  app.delete<{ Params: Static<typeof WebhookParams> }>('/api/webhooks/:id', {
    schema: { summary: 'Delete a webhook endpoint with everything queued for it, its dead letters and its log', tags, security, params: WebhookParams, response: { 204: { type: 'null' }, ...errors } },
    onRequest: auth,
  }, async (req, reply) => {
    await backend('deleting the endpoint', async () => { await w.endpoints.remove(req.params.id) })
    await changed()
    return reply.code(204).send()
  })

  app.get<{ Params: Static<typeof WebhookParams> }>('/api/webhooks/:id/attempts', {
    schema: { summary: 'The latest attempts to deliver to an endpoint (50), newest first', tags, security, params: WebhookParams, response: { 200: WebhookAttempts, ...errors } },
    onRequest: auth,
  }, async (req) => await backend('reading the attempts', async () => {
    await w.endpoints.get(req.params.id)
    const list = await h.backend.webhooks.attempts(req.params.id, 50)
    return { attempts: list.map((a) => ({ ...a, at: new Date(a.at).toISOString() })) }
  }))

  app.get<{ Params: Static<typeof WebhookParams>, Querystring: Static<typeof DeadLetterQuery> }>('/api/webhooks/:id/dead-letters', {
    schema: { summary: 'Deliveries that will not be tried again: every attempt failed, the endpoint answered 410, or it was disabled with them queued', tags, security, params: WebhookParams, querystring: DeadLetterQuery, response: { 200: DeadLetters, ...errors } },
    onRequest: auth,
  }, async (req, reply) => {
    const page = await backend('reading the dead letters', async () => {
      await w.endpoints.get(req.params.id)
      return await h.backend.webhooks.deadLetters(req.params.id, Number(req.query.from ?? 0), Number(req.query.limit ?? DEFAULT_PAGE))
    })
    // Each payload is sent as the JSON that was POSTed, not parsed and written again.
    const items = page.deadLetters.map((d) => `{"webhookId":${JSON.stringify(d.webhookId)},"eventId":${JSON.stringify(d.eventId)},"type":${JSON.stringify(d.type)},"reason":${JSON.stringify(d.reason)},"deadAt":${JSON.stringify(new Date(d.deadAt).toISOString())},"attempts":${d.attempts},"publishedAt":${JSON.stringify(new Date(d.firstAt).toISOString())},"payload":${d.body}}`)
    const next = page.next === null ? '' : `,"next":${page.next}`
    return reply.code(200).type('application/json; charset=utf-8').send(`{"deadLetters":[${items.join(',')}]${next}}`)
  })

  app.post<{ Params: Static<typeof WebhookParams>, Body: Static<typeof ReplayBody> }>('/api/webhooks/:id/dead-letters/replay', {
    schema: { summary: 'Deliver dead letters again (those named, or the newest), attempts counted from 0, with the same webhook-id', tags, security, params: WebhookParams, body: ReplayBody, response: { 202: Replayed, ...errors } },
    onRequest: auth,
  }, async (req, reply) => {
    const replayed = await backend('replaying', async () => {
      await w.endpoints.get(req.params.id)
      return await h.backend.webhooks.replay(req.params.id, req.body?.webhookIds ?? null, req.body?.limit ?? 1000, Date.now())
    })
    return reply.code(202).send({ replayed })
  })
}, { name: 'herald-webhooks-api' })
