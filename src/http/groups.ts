import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import { withBackend } from '../admin/actions.js'
import { signToken } from '../auth/signer.js'
import { GroupLimit } from '../backend/groups.js'
import { HeraldError } from '../errors.js'
import { announce } from '../groups/membership.js'
import { DEFAULT_PAGE, GroupMembersQuery, GroupMembersView, GroupParams, MemberParams, Membership, VisitorRequest, VisitorToken } from '../protocol/schema.js'
import { errors, security } from './api.js'
import { serviceAuth } from './service-auth.js'


/**
 * Groups through the API (membership stored in the backend, effective on the
 * members' open connections on every node), and visitor tokens for anonymous
 * conversations. docs/protocol.md, Groups and Visitor tokens.
 */
export default fp(async function groupsApi (app) {
  const h = app.herald
  const asService = serviceAuth(h, ['service'])
  const asServiceOrAdmin = serviceAuth(h, ['service', 'admin'])

  const change = async (group: string, userId: string, member: boolean): Promise<Static<typeof Membership>> => {
    const changed = await withBackend(h, member ? 'adding the member' : 'removing the member', async () => {
      try {
        return member ? await h.backend.groups.add(group, userId) : await h.backend.groups.remove(group, userId)
      } catch (err) {
        if (err instanceof GroupLimit) throw new HeraldError('TOO_MANY_GROUPS')
        throw err
      }
    })
    // Told even when nothing changed in the store: a node that missed the
    // first announcement (it was cut off from Redis) catches up on a retry.
    await announce(h, { group, userId, member })
    return { group, userId, member, changed }
  }

  app.put<{ Params: Static<typeof MemberParams> }>('/api/groups/:group/members/:userId', {
    schema: { summary: "Make a user a member of a group: its open connections on every node receive the group's events within a second", tags: ['groups'], security, params: MemberParams, response: { 200: Membership, 409: { $ref: 'ErrorReply#' }, ...errors } },
    onRequest: asService,
  }, async (req) => await change(req.params.group, req.params.userId, true))

  app.delete<{ Params: Static<typeof MemberParams> }>('/api/groups/:group/members/:userId', {
    schema: { summary: "End a user's membership through the API: nothing more of the group reaches its connections (a token's groups claim still holds for that token's life)", tags: ['groups'], security, params: MemberParams, response: { 200: Membership, ...errors } },
    onRequest: asService,
  }, async (req) => await change(req.params.group, req.params.userId, false))

  app.get<{ Params: Static<typeof GroupParams>, Querystring: Static<typeof GroupMembersQuery> }>('/api/groups/:group/members', {
    schema: { summary: "A group's members through the API", tags: ['groups'], security, params: GroupParams, querystring: GroupMembersQuery, response: { 200: GroupMembersView, ...errors } },
    onRequest: asServiceOrAdmin,
  }, async (req) => {
    const limit = Number(req.query.limit ?? DEFAULT_PAGE)
    const m = await withBackend(h, 'listing the members', async () => await h.backend.groups.members(req.params.group, limit))
    return { group: req.params.group, members: m.members, total: m.total }
  })

  app.post<{ Body: Static<typeof VisitorRequest> }>('/api/visitors', {
    schema: { summary: 'Mint a short-lived token for an anonymous visitor of one conversation: a fresh identity, a member of that group only, allowed to publish the given types', tags: ['groups'], security, body: VisitorRequest, response: { 201: VisitorToken, 404: { $ref: 'ErrorReply#' }, ...errors } },
    onRequest: asService,
  }, async (req, reply) => {
    const secret = h.config.jwt.secret
    if (secret === undefined) throw new HeraldError('VISITORS_UNAVAILABLE')
    const { group, publish } = req.body
    const ttlMs = req.body.ttlSeconds !== undefined ? req.body.ttlSeconds * 1000 : h.config.publish.visitorTtlMs
    const id = randomUUID()
    const userId = `visitor-${id}`
    const sessionId = `visitor-session-${id}`
    const { issuer, audience } = h.config.jwt
    const token = signToken(secret, {
      sub: userId,
      sid: sessionId,
      roles: ['visitor'],
      groups: [group],
      publish: [...new Set(publish)],
      ...(issuer !== undefined ? { iss: issuer[0]! } : {}),
      ...(audience !== undefined ? { aud: audience[0]! } : {}),
    }, ttlMs)
    // fast-jwt counts exp in whole seconds from now.
    const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + ttlMs).toISOString()
    return reply.code(201).send({ token, userId, sessionId, group, publish: [...new Set(publish)], expiresAt })
  })
}, { name: 'herald-groups-api' })
