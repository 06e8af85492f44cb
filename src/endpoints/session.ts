import type { FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { parseClientFrame } from '../protocol/envelope.js'
import type { Endpoint } from './connection.js'
import { closed, opened, received, type HandlerTable } from './lifecycle.js'
import { WsConnection } from './ws-connection.js'

export type { Handler, HandlerTable } from './lifecycle.js'

/** Drives one authenticated WebSocket from upgrade to close. */
export function openSession (h: Herald, ws: WebSocket, req: FastifyRequest, endpoint: Endpoint, handlers: HandlerTable): void {
  const identity = req.identity!
  const id = req.connectionId!
  // The node's logger is the parent, not the request's: the request's logger
  // would otherwise stay alive for the connection's whole life.
  const conn = new WsConnection(id, endpoint, ws, identity, req.ip, h.log, h.config.limits.sendBufferBytes, req.id)
  // The upgrade ran through Fastify with a ServerResponse bound to the socket;
  // unbound, it (and the request behind it) is not kept for the connection's life.
  const raw = req.raw.socket as { _httpMessage?: { detachSocket?: (s: unknown) => void } | null }
  raw._httpMessage?.detachSocket?.(req.raw.socket)

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) return conn.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
    const text = data.toString()
    received(h, conn, handlers, () => {
      const p = parseClientFrame(text)
      return p.ok ? { msg: p.msg } : { error: [p.code, p.message, p.id] }
    })
  })
  ws.on('pong', () => { conn.alive = true })
  // @fastify/websocket's own 'error' listener closes over the request and the
  // reply, keeping both (and the ServerResponse) alive for the connection's
  // whole life, several KiB each. Ours replaces it: ws reports protocol
  // violations (bad UTF-8: 1007, too big: 1009) here and closes the socket
  // itself; without a listener the error would crash the node.
  ws.removeAllListeners('error')
  ws.on('error', (err) => { conn.log.info({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error') })
  // Logged and counted with the code this node chose (4008, 4009...), as Socket.IO does, not 1006 from a terminate.
  ws.on('close', (code: number) => closed(h, conn, conn.closeCode ?? code))
  opened(h, conn)
}
