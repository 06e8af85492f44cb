import fp from 'fastify-plugin'
import { adminCommands } from '../admin/commands.js'
import { errorBody } from '../errors.js'
import { upgradeGuard } from './guard.js'
import { eventsCommands } from './commands.js'
import { openSession, type SessionSite } from './session.js'

/** /ws/events for users and /ws/admin for admins. */
export default fp(async function wsEndpoints (app) {
  const h = app.herald
  app.decorateRequest('identity', null)
  app.decorateRequest('connectionId', null)
  const shared = { h, serverId: h.config.serverId, log: h.log, framesOut: h.connections.framesOut, sendBufferBytes: h.config.limits.sendBufferBytes }
  const eventsSite: SessionSite = { ...shared, endpoint: 'events', handlers: eventsCommands }
  const adminSite: SessionSite = { ...shared, endpoint: 'admin', handlers: adminCommands }
  const upgradeOnly = async (_req: unknown, reply: import('fastify').FastifyReply) => reply.code(426).header('upgrade', 'websocket').send(errorBody('UPGRADE_REQUIRED'))

  app.route({
    method: 'GET',
    url: '/ws/events',
    schema: { hide: true },
    preValidation: upgradeGuard(h, 'events'),
    handler: upgradeOnly,
    wsHandler: (ws, req) => openSession(eventsSite, ws, req),
  })

  app.route({
    method: 'GET',
    url: '/ws/admin',
    schema: { hide: true },
    preValidation: upgradeGuard(h, 'admin'),
    handler: upgradeOnly,
    wsHandler: (ws, req) => openSession(adminSite, ws, req),
  })
}, { name: 'herald-ws' })
