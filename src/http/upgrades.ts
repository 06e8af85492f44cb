import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import { errorBody } from '../errors.js'
import { writeResponse } from './errors.js'
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

// The handshake as ws (pinned) checks it first, checked here before anyone
// else: a request that breaks it is answered in the error shape, and no
// taker spends a token check and an admission slot in Redis on a handshake
// ws would then refuse in text/html. Same rules as ws's handleUpgrade,
// the version read as a number as it reads it.
const WEBSOCKET_KEY = /^[+/0-9A-Za-z]{22}==$/

function handshakeFault (req: IncomingMessage): { message: string, headers?: Record<string, string> } | null {
  if (req.method !== 'GET') return { message: 'a WebSocket handshake must be a GET' }
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return { message: 'only WebSocket upgrades are served (Upgrade: websocket)' }
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !WEBSOCKET_KEY.test(key)) return { message: 'missing or invalid Sec-WebSocket-Key header' }
  const version = Number(req.headers['sec-websocket-version'])
  if (version !== 13 && version !== 8) return { message: 'missing or invalid Sec-WebSocket-Version header (13 or 8)', headers: { 'Sec-WebSocket-Version': '13, 8' } }
  return null
}

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
    const fault = handshakeFault(req)
    if (fault !== null) {
      writeResponse(socket, 400, errorBody('MALFORMED_REQUEST', fault.message), fault.headers)
      return
    }
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
