import { createServer, type RequestListener, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { errorBody } from '../errors.js'
import { writeResponse } from './errors.js'
import { withValidForwardedFor } from './forwarded.js'

/** Requests one connection may have waiting for their answers (HTTP/1.1 pipelining). */
export const MAX_PIPELINED = 16

/**
 * The node's HTTP server, with the handshake deadline on every connection:
 * a slowloris must send its whole request (upgrade included) within
 * `handshakeTimeoutMs`. Node checks its header clock every second instead of
 * every 30. X-Forwarded-For is cut to its valid entries before anything
 * reads it (see forwarded.ts): here for requests, in the one upgrade listener
 * (upgrades.ts) for upgrades; Socket.IO's polling requests, which engine.io
 * takes before this listener, make the same call where they read the address.
 */
export function createHttpServer (handler: RequestListener, handshakeTimeoutMs: number): Server {
  // Requests a connection has sent and not yet been answered. Node parses
  // every request of a chunk it reads before any is answered, and holds their
  // answers in order: one write of 2,000 pipelined `GET /metrics` made a node
  // render them all in one go (seconds with the event loop held, hundreds of
  // MiB of answers for a client that reads none). Past MAX_PIPELINED the
  // connection is closed and what it sent is dropped unread.
  const pending = new WeakMap<Socket, number>()
  const server = createServer({
    headersTimeout: handshakeTimeoutMs,
    requestTimeout: handshakeTimeoutMs + 5000,
    connectionsCheckingInterval: 1000,
  }, (req, res) => {
    const socket = req.socket
    if (socket.destroyed) return
    const n = (pending.get(socket) ?? 0) + 1
    if (n > MAX_PIPELINED) { socket.destroy(); return }
    pending.set(socket, n)
    res.once('close', () => { pending.set(socket, (pending.get(socket) ?? 1) - 1) })
    handler(withValidForwardedFor(req), res)
  })
  // Node's header clock starts with the first byte: a connection that never
  // sends one would be held for ever. Not a socket timeout: that would also
  // cut Socket.IO's long-polling requests, idle by design. One sweep a second
  // for the node rather than a timer per connection, which an idle node with
  // 20k fresh connections would otherwise carry.
  const mute = new Map<Socket, number>()
  let sweep: NodeJS.Timeout | null = null
  const sweepMute = (): void => {
    const now = Date.now()
    for (const [socket, deadline] of mute) {
      if (socket.bytesRead > 0 || socket.destroyed) mute.delete(socket)
      else if (now >= deadline) { mute.delete(socket); socket.destroy() }
    }
    if (mute.size === 0 && sweep !== null) { clearInterval(sweep); sweep = null }
  }
  server.on('connection', (socket: Socket) => {
    mute.set(socket, Date.now() + handshakeTimeoutMs)
    sweep ??= setInterval(sweepMute, 1000).unref()
  })
  server.once('close', () => { mute.clear(); if (sweep !== null) { clearInterval(sweep); sweep = null } })
  // Unheard, Node drops a CONNECT with no answer at all: a client (or a
  // scanner looking for an open proxy) gets told, in the error shape.
  server.on('connect', (_req, socket: Socket) => {
    writeResponse(socket, 400, errorBody('MALFORMED_REQUEST', 'the CONNECT method is not served: Herald is not a proxy'))
  })
  return server
}
