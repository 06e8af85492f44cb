import { randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { Errors } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { parseClientFrame, type ClientMessage } from '../protocol/envelope.js'
import { Connection, type Endpoint } from './connection.js'

export type Handler = (h: Herald, conn: Connection, msg: ClientMessage) => void | Promise<void>
export type HandlerTable = Readonly<Record<string, Handler>>

const ATTACH_TIMEOUT_MS = 5000
// Error replies tolerated per minute before the connection counts as abusive.
const MAX_STRIKES_PER_MINUTE = 20

/** Drives one authenticated socket from upgrade to close. */
export function openSession (h: Herald, ws: WebSocket, req: FastifyRequest, endpoint: Endpoint, handlers: HandlerTable): void {
  const identity = req.identity!
  const id = randomUUID()
  const log = req.log.child({ connectionId: id, userId: identity.userId, endpoint })
  const conn = new Connection(id, endpoint, ws, identity, req.ip, log, h.config.limits.sendBufferBytes)
  h.connections.set(conn.id, conn)
  if (diag.connectionOpen.hasSubscribers) diag.connectionOpen.publish({ endpoint, connectionId: conn.id, userId: conn.userId, ip: conn.ip })
  log.info({ ip: conn.ip, sessionId: identity.sessionId }, 'connection open')

  ws.on('message', (data: RawData, isBinary: boolean) => {
    conn.alive = true
    if (isBinary) return conn.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
    const parsed = parseClientFrame(data.toString())
    if (!parsed.ok) return strike(h, conn, parsed.code, parsed.message, parsed.id)
    const handler = Object.hasOwn(handlers, parsed.msg.type) ? handlers[parsed.msg.type] : undefined
    if (handler === undefined) return strike(h, conn, 'UNKNOWN_TYPE', `${Errors.UNKNOWN_TYPE.message}: ${parsed.msg.type.slice(0, 64)}`, parsed.msg.id)
    if (diag.messageIn.hasSubscribers) diag.messageIn.publish({ endpoint, type: parsed.msg.type })
    try {
      const r = handler(h, conn, parsed.msg)
      if (r instanceof Promise) r.catch((err: unknown) => internalError(conn, err, parsed.msg.id))
    } catch (err) {
      internalError(conn, err, parsed.msg.id)
    }
  })
  ws.on('pong', () => { conn.alive = true })
  // ws reports protocol violations (bad UTF-8: 1007, too big: 1009) here and
  // closes the socket itself; without a listener the error would crash the node.
  ws.on('error', (err) => { log.info({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error') })
  ws.on('close', (code: number) => {
    conn.closed = true
    h.connections.delete(conn.id)
    h.hub.detach(conn)
    const durationMs = Date.now() - conn.openedAt
    if (diag.connectionClose.hasSubscribers) diag.connectionClose.publish({ endpoint, connectionId: conn.id, userId: conn.userId, code, durationMs })
    log.info({ code, durationMs }, 'connection closed')
  })

  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('subscribe timed out')), ATTACH_TIMEOUT_MS) })
  Promise.race([h.hub.attach(conn), timeout]).then(() => {
    if (conn.closed) return
    conn.welcome({
      connectionId: conn.id,
      serverId: h.config.serverId,
      userId: conn.userId,
      sessionId: identity.sessionId,
      expiresAt: new Date(identity.expiresAt).toISOString(),
      heartbeatInterval: h.config.heartbeatIntervalMs,
    })
  }, (err: unknown) => {
    log.warn({ err: { message: (err as Error).message } }, 'could not subscribe connection channels')
    conn.close(CloseCodes.INTERNAL_ERROR, 'backend unavailable')
  }).finally(() => clearTimeout(timer))
}

function strike (h: Herald, conn: Connection, code: Parameters<Connection['fail']>[0], message: string, id?: string): void {
  const now = Date.now()
  if (now - conn.strikesWindowStart > 60_000) { conn.strikes = 0; conn.strikesWindowStart = now }
  conn.fail(code, message, id)
  if (++conn.strikes > MAX_STRIKES_PER_MINUTE) {
    conn.log.warn({ strikes: conn.strikes }, 'closing abusive connection')
    conn.close(CloseCodes.RATE_LIMITED, 'too many invalid messages')
  }
}

function internalError (conn: Connection, err: unknown, id?: string): void {
  conn.log.error({ err }, 'handler failed')
  conn.fail('INTERNAL', Errors.INTERNAL.message, id)
}
