import fp from 'fastify-plugin'
import { adminCommands } from '../admin/commands.js'
import { errorBody } from '../errors.js'
import { eventsCommands } from './commands.js'
import type { SessionSite } from './session.js'
import { createUpgrades } from './upgrade.js'

/**
 * /ws/events for users and /ws/admin for admins. Their upgrades are taken
 * from the server's upgrade listener (src/http/upgrades.ts) before Fastify
 * routes them (upgrade.ts); a plain GET is routed and answered 426. Upgrades
 * Fastify routes are refused but on routes that take them.
 */
export default fp(async function wsEndpoints (app) {
  const h = app.herald
  const shared = { h, serverId: h.config.serverId, log: h.log, framesOut: h.connections.framesOut, sendBufferBytes: h.config.limits.sendBufferBytes }
  const sites = new Map<string, SessionSite>([
    ['/ws/events', { ...shared, endpoint: 'events', handlers: eventsCommands }],
    ['/ws/admin', { ...shared, endpoint: 'admin', handlers: adminCommands }],
  ])
  const upgradeOnly = async (_req: unknown, reply: import('fastify').FastifyReply) => reply.code(426).header('upgrade', 'websocket').send(errorBody('UPGRADE_REQUIRED'))
  for (const url of sites.keys()) app.route({ method: 'GET', url, schema: { hide: true }, handler: upgradeOnly })

  // An upgrade that reaches Fastify's router was not taken by upgrade.ts. On
  // these routes it is a spelling of the path the router reads alike
  // (`%65vents`) or a HEAD; on any other route but the ones marked
  // `config: { upgrades: true }` (the health stream) it has no endpoint.
  // Refused 404: @fastify/websocket would complete it (a 101 for nobody,
  // or, here, unauthenticated) and close it.
  // A callback hook: it runs on every request, and an async one costs each a promise.
  app.addHook('onRequest', (req, reply, done) => {
    if (!req.ws || (req.method === 'GET' && (req.routeOptions.config as { upgrades?: boolean } | undefined)?.upgrades === true)) return done()
    const url = req.routeOptions.url
    const where = url !== undefined && sites.has(url) ? `WebSocket upgrades are taken at ${url}, spelt exactly, with GET` : 'no WebSocket endpoint at this path'
    void reply.code(404).send(errorBody('NOT_FOUND', where))
  })

  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.upgrades.take(createUpgrades(h, app.websocketServer, sites, () => closing))
}, { name: 'herald-ws', dependencies: ['herald-upgrades'] })
