import type { RawData, WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { parseClientFrame } from '../protocol/envelope.js'
import { frameLimit } from '../publish/limits.js'
import type { Site } from './connection.js'
import { closed, opened, received, type HandlerTable } from './lifecycle.js'
import { heardFrom } from './liveness.js'
import type { Upgraded } from './upgrade.js'
import { WsConnection } from './ws-connection.js'

export type { Handler, HandlerTable } from './lifecycle.js'

/** What every connection on one endpoint shares: made once per route, not per connection. */
export interface SessionSite extends Site {
  readonly h: Herald
  readonly handlers: HandlerTable
  /** MAX_SEND_BUFFER_BYTES, read on every delivery */
  readonly sendBufferBytes: number
}

// The socket's listeners are shared functions that find their connection on
// the socket, rather than closures made per connection: four closures and
// their context cost about 300 bytes on every idle connection.
const kConn = Symbol('herald.connection')
type Tagged = WebSocket & { [kConn]: WsConnection }
const connOf = (ws: WebSocket): WsConnection => (ws as Tagged)[kConn]

// What ws reports for a connection that ended without a close frame.
const ABNORMAL_CLOSURE = 1006

function onMessage (this: WebSocket, data: RawData, isBinary: boolean): void {
  const conn = connOf(this)
  if (isBinary) return conn.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
  const text = data.toString()
  const limits = conn.site.h.config.limits
  const bytes = (data as Buffer).length
  // Within the transport's limit but over its own: a publish may be larger
  // than other frames (src/publish/handler.ts). Only such frames pay for
  // this peek at their type.
  let tooLarge = false
  if (bytes > Math.min(limits.messageBytes, limits.publishBytes)) {
    const verdict = frameLimit(limits, peekType(text), bytes)
    if (verdict === 'close') return conn.close(CloseCodes.MESSAGE_TOO_BIG, 'message too big')
    tooLarge = verdict === 'too-large-publish'
  }
  received(conn.site.h, conn, conn.site.handlers, () => {
    const p = parseClientFrame(text)
    if (p.ok && tooLarge) return { error: ['PUBLISH_TOO_LARGE', `a publish frame may hold at most ${limits.publishBytes} bytes (MAX_PUBLISH_BYTES); this one holds ${bytes}`, p.msg.id] }
    return p.ok ? { msg: p.msg } : { error: [p.code, p.message, p.id] }
  })
}

/** The `type` of a frame that is a JSON object; undefined otherwise (the parser says why later). */
function peekType (text: string): unknown {
  try { return (JSON.parse(text) as { type?: unknown } | null)?.type } catch { return undefined }
}

function onPong (this: WebSocket): void { heardFrom(connOf(this)) }

// The code ws closes with for each of its protocol errors (its WS_ERR_* codes).
function protocolCloseCode (errCode: string | undefined): number {
  if (errCode === 'WS_ERR_INVALID_UTF8') return CloseCodes.INVALID_PAYLOAD
  if (errCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || errCode === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH') return CloseCodes.MESSAGE_TOO_BIG
  if (errCode === 'WS_ERR_TOO_MANY_BUFFERED_PARTS') return CloseCodes.POLICY_VIOLATION
  return CloseCodes.PROTOCOL_ERROR
}

// ws reports protocol violations (bad UTF-8: 1007, too big: 1009) here and
// closes the socket itself; without a listener the error would crash the node.
// The close is this node's, whatever code the peer answers with.
function onError (this: WebSocket, err: Error): void {
  const conn = connOf(this)
  const code = (err as { code?: string }).code
  conn.closeCode ??= protocolCloseCode(code)
  conn.log.info({ err: { message: err.message, code } }, 'socket error')
}

// Logged and counted with the code this node chose (4008, 4009...), as Socket.IO does, not 1006 from a terminate.
// Otherwise the peer closed: with a code of its own choosing, or 1006 when the
// connection ended without a close frame (which ws records, nobody sends).
function onClose (this: WebSocket, code: number): void {
  const conn = connOf(this)
  if (conn.closeCode !== null) return closed(conn.site.h, conn, conn.closeCode)
  closed(conn.site.h, conn, code, code !== ABNORMAL_CLOSURE)
}

/** Drives one authenticated WebSocket from upgrade to close. */
export function openSession (site: SessionSite, ws: WebSocket, up: Upgraded): void {
  const conn = new WsConnection(up.connectionId, site, ws, up.identity, up.ip, up.reqId)
  ;(ws as Tagged)[kConn] = conn
  ws.on('message', onMessage)
  ws.on('pong', onPong)
  ws.on('error', onError)
  ws.on('close', onClose)
  opened(site.h, conn)
}
