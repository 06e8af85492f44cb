import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { Identity } from '../auth/verifier.js'
import type { Delivery } from '../events/hub.js'
import { serverFrame } from '../protocol/envelope.js'
import { Connection, type Endpoint } from './connection.js'

const TEXT = { binary: false } as const

// Writes to one socket within an event-loop turn leave in one syscall: the
// first delivery corks the socket, and one setImmediate uncorks every socket
// corked in that turn. Bounded: a socket whose buffer passes the send limit is
// closed as a slow consumer before anything more is queued on it.
const corked: Socket[] = []
let uncorkScheduled = false
function uncorkAll (): void {
  uncorkScheduled = false
  for (const s of corked) s.uncork()
  corked.length = 0
}

/** A connection on /ws/events or /ws/admin: JSON text frames over `ws`. */
export class WsConnection extends Connection {
  readonly transport = 'ws' as const
  /** the code this node closed with; the peer may never echo it (a dead or stalled peer is terminated) */
  closeCode: number | null = null

  constructor (
    id: string,
    kind: Endpoint,
    readonly ws: WebSocket,
    identity: Identity,
    ip: string,
    log: FastifyBaseLogger,
    private readonly sendBufferLimit: number,
    reqId?: string,
  ) {
    super(id, kind, identity, ip, log, reqId)
  }

  ping (): void {
    try { this.ws.ping() } catch { /* closing already */ }
  }

  // A consumer that does not read is closed rather than buffered without end.
  protected congested (): boolean {
    return this.ws.bufferedAmount > this.sendBufferLimit
  }

  protected writeDelivery (d: Delivery): void {
    if (this.ws.readyState !== 1) return
    // The frame is already complete (built once per event for all recipients);
    // no compression is negotiated, so ws has nothing in flight to interleave with.
    const socket = (this.ws as unknown as { _socket: Socket })._socket
    if (socket.writableCorked === 0) {
      socket.cork()
      corked.push(socket)
      if (!uncorkScheduled) { uncorkScheduled = true; setImmediate(uncorkAll) }
    }
    socket.write(d.wsFrame())
  }

  protected writeMessage (type: string, payload: unknown, id?: string): void {
    if (this.ws.readyState === 1) this.ws.send(serverFrame(type, payload, id), TEXT)
  }

  protected terminate (code: number, reason: string): void {
    this.closeCode = code
    try {
      this.ws.close(code, reason)
    } catch {
      this.ws.terminate()
    }
    // A peer that never answers the close handshake must not hold the socket.
    setTimeout(() => { if (this.ws.readyState !== 3) this.ws.terminate() }, 2000).unref()
  }
}
