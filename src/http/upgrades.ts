import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import { withValidForwardedFor } from './forwarded.js'

// The server's `upgrade` event has one listener, this one. Three parties want
// it: the WebSocket endpoints (src/endpoints/upgrade.ts: GET /ws/events and
// /ws/admin, outside Fastify), engine.io (/socket.io/) and @fastify/websocket
// (everything else, through Fastify's router: the health stream, and the
// refusals of the rest). Each listener of its own would see every upgrade,
// and the ones that do not recognise a path destroy its socket. Here each
// taker is asked in turn whether a request is its own; Fastify gets what none
// took. X-Forwarded-For is cut to its valid entries here, once, before any
// of them reads or logs it (forwarded.ts), as the server's request listener
// does for plain requests. A throw from a taker (none is known) costs that
// client its socket, not the node: it would otherwise escape from an event
// emitter.

/** Takes an upgrade it recognises (and answers it, or refuses it) and says so; leaves the rest alone. */
export type UpgradeTaker = (req: IncomingMessage, socket: Socket, head: Buffer) => boolean

export interface UpgradeRouter {
  /** Asked after the takers registered before it, before Fastify. */
  take (taker: UpgradeTaker): void
}

declare module 'fastify' {
  interface FastifyInstance {
    upgrades: UpgradeRouter
  }
}

/** Registered right after @fastify/websocket, whose listener becomes the last resort. */
export default fp(async function upgradeRouter (app) {
  const server = app.server
  const fastify = server.listeners('upgrade') as Array<(req: IncomingMessage, socket: Socket, head: Buffer) => void>
  server.removeAllListeners('upgrade')
  const takers: UpgradeTaker[] = []
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    withValidForwardedFor(req)
    try {
      for (const take of takers) if (take(req, socket, head)) return
    } catch (err) {
      app.log.error({ err: { message: (err as Error).message } }, 'upgrade failed')
      socket.destroy()
      return
    }
    for (const l of fastify) l.call(server, req, socket, head)
  })
  app.decorate('upgrades', { take: (taker: UpgradeTaker) => { takers.push(taker) } })
}, { name: 'herald-upgrades', dependencies: ['@fastify/websocket'] })
