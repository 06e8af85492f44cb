import type { FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { Errors } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { parseClientFrame, type ClientMessage } from '../protocol/envelope.js'
import { Connection, type Endpoint } from './connection.js'
import { EVICTED_REASON, wasEvictedEarly } from './control.js'
import { armExpiry } from './expiry.js'

export type Handler = (h: Herald, conn: Connection, msg: ClientMessage) => void | Promise<void>
export type HandlerTable = Readonly<Record<string, Handler>>

const ATTACH_TIMEOUT_MS = 5000
// Frames sent while over the rate limit before the connection is closed 4029.
const MAX_LIMITED_FRAMES = 10
// Frames queued behind the rate limiter; a client this far ahead is flooding.
const MAX_INFLIGHT = 64

/** Drives one authenticated socket from upgrade to close. */
export function openSession (h: Herald, ws: WebSocket, req: FastifyRequest, endpoint: Endpoint, handlers: HandlerTable): void {
  const identity = req.identity!
  const id = req.connectionId!
  const log = req.log.child({ connectionId: id, userId: identity.userId, endpoint })
  const conn = new Connection(id, endpoint, ws, identity, req.ip, log, h.config.limits.sendBufferBytes)
  h.connections.set(conn.id, conn)
  if (diag.connectionOpen.hasSubscribers) diag.connectionOpen.publish({ endpoint, connectionId: conn.id, userId: conn.userId, ip: conn.ip })
  log.info({ ip: conn.ip, sessionId: identity.sessionId }, 'connection open')

  ws.on('message', (data: RawData, isBinary: boolean) => {
    conn.alive = true
    if (conn.closed) return
    if (isBinary) return conn.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
    if (conn.inflight >= MAX_INFLIGHT) return conn.close(CloseCodes.RATE_LIMITED, 'message flood')
    const text = data.toString()
    conn.inflight++
    // Chained, so frames are handled in arrival order whatever the limiter's latency.
    conn.inbox = conn.inbox.then(async () => {
      const verdict = await h.messageLimiter.consume(conn.userId, conn.ip)
      conn.inflight--
      if (conn.closed) return
      if (!verdict.ok) {
        if (diag.rateLimit.hasSubscribers) diag.rateLimit.publish({ scope: verdict.scope === 'ip' ? 'message-ip' : 'message-user' })
        if (++conn.limited > MAX_LIMITED_FRAMES) return conn.close(CloseCodes.RATE_LIMITED, 'rate limit exceeded')
        const retryAfter = Math.ceil(verdict.retryAfterMs / 1000)
        return conn.fail('RATE_LIMITED', `at most ${h.config.limits.messagesPerMinute} messages per minute per ${verdict.scope === 'ip' ? 'IP address' : 'user'}; retry in ${retryAfter} s`, idOf(text))
      }
      conn.limited = 0
      handleFrame(text)
    }).catch((err: unknown) => {
      conn.inflight = Math.max(0, conn.inflight - 1)
      internalError(conn, err)
    })
  })

  const handleFrame = (text: string): void => {
    const parsed = parseClientFrame(text)
    if (!parsed.ok) return conn.fail(parsed.code, parsed.message, parsed.id)
    const handler = Object.hasOwn(handlers, parsed.msg.type) ? handlers[parsed.msg.type] : undefined
    if (handler === undefined) return conn.fail('UNKNOWN_TYPE', `${Errors.UNKNOWN_TYPE.message}: ${parsed.msg.type.slice(0, 64)}`, parsed.msg.id)
    if (diag.messageIn.hasSubscribers) diag.messageIn.publish({ endpoint, type: parsed.msg.type })
    try {
      const r = handler(h, conn, parsed.msg)
      if (r instanceof Promise) r.catch((err: unknown) => internalError(conn, err, parsed.msg.id))
    } catch (err) {
      internalError(conn, err, parsed.msg.id)
    }
  }
  ws.on('pong', () => { conn.alive = true })
  // ws reports protocol violations (bad UTF-8: 1007, too big: 1009) here and
  // closes the socket itself; without a listener the error would crash the node.
  ws.on('error', (err) => { log.info({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error') })
  ws.on('close', (code: number) => {
    conn.closed = true
    if (conn.expiryTimer) clearTimeout(conn.expiryTimer)
    h.connections.delete(conn.id)
    h.hub.detach(conn)
    const durationMs = Date.now() - conn.openedAt
    if (diag.connectionClose.hasSubscribers) diag.connectionClose.publish({ endpoint, connectionId: conn.id, userId: conn.userId, code, durationMs })
    log.info({ code, durationMs }, 'connection closed')
  })

  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('subscribe timed out')), ATTACH_TIMEOUT_MS) })
  if (wasEvictedEarly(id)) {
    conn.close(CloseCodes.FORBIDDEN, EVICTED_REASON)
    return
  }
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
    armExpiry(h, conn)
  }, (err: unknown) => {
    log.warn({ err: { message: (err as Error).message } }, 'could not subscribe connection channels')
    conn.close(CloseCodes.INTERNAL_ERROR, 'backend unavailable')
  }).finally(() => clearTimeout(timer))
}

/** The request id of a frame we did not otherwise parse, when it has a usable one. */
function idOf (text: string): string | undefined {
  const r = parseClientFrame(text)
  return r.ok ? r.msg.id : r.id
}

function internalError (conn: Connection, err: unknown, id?: string): void {
  conn.log.error({ err }, 'handler failed')
  conn.fail('INTERNAL', Errors.INTERNAL.message, id)
}
