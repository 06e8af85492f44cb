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
  const log = req.log.child({ connectionId: id, userId: identity.userId, endpoint })
  const conn = new WsConnection(id, endpoint, ws, identity, req.ip, log, h.config.limits.sendBufferBytes)

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) return conn.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
    const text = data.toString()
    received(h, conn, handlers, () => {
      const p = parseClientFrame(text)
      return p.ok ? { msg: p.msg } : { error: [p.code, p.message, p.id] }
    })
  })
  ws.on('pong', () => { conn.alive = true })
  // ws reports protocol violations (bad UTF-8: 1007, too big: 1009) here and
  // closes the socket itself; without a listener the error would crash the node.
  ws.on('error', (err) => { log.info({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error') })
  ws.on('close', (code: number) => closed(h, conn, code))
  opened(h, conn)
}
