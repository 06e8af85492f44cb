import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { Identity } from '../auth/verifier.js'
import type { Delivery } from '../events/hub.js'
import { serverFrame } from '../protocol/envelope.js'
import { Connection } from './connection.js'
import type { SessionSite } from './session.js'

const TEXT = { binary: false } as const

// Deliveries to one socket within an event-loop turn leave in one write: the
// frames wait in the connection's outbox, and one setImmediate flushes every
// outbox filled in that turn as one buffer. A write request per frame (what
// corking the socket gave) cost most of the garbage collector's work at a
// million deliveries a second, and most of the memory a slow consumer held
// (~100 bytes of bookkeeping per 150-byte frame). Bounded: a socket whose
// queue passes the send limit is closed as a slow consumer before anything
// more is queued on it.
const filled: WsConnection[] = []
let flushScheduled = false
function flushAll (): void {
  flushScheduled = false
  for (const c of filled) c.flush()
  filled.length = 0
}

/** A connection on /ws/events or /ws/admin: JSON text frames over `ws`. */
export class WsConnection extends Connection {
  readonly transport = 'ws' as const
  /** the code this node closed with; the peer may never echo it (a dead or stalled peer is terminated) */
  closeCode: number | null = null
  /** frames delivered this event-loop turn, written together by flushAll */
  private outbox: Buffer[] | null = null
  private outboxBytes = 0

  constructor (
    id: string,
    /** the endpoint's shared context (the node, the command table) */
    readonly site: SessionSite,
    readonly ws: WebSocket,
    identity: Identity,
    ip: string,
    log: FastifyBaseLogger,
    reqId?: string,
  ) {
    super(id, site.endpoint, identity, ip, log, reqId)
  }

  ping (): void {
    try { this.ws.ping() } catch { /* closing already */ }
  }

  // A consumer that does not read is closed rather than buffered without end.
  protected congested (): boolean {
    return this.ws.bufferedAmount + this.outboxBytes > this.site.h.config.limits.sendBufferBytes
  }

  protected writeDelivery (d: Delivery): void {
    if (this.ws.readyState !== 1) return
    // The frame is already complete (built once per event for all recipients);
    // no compression is negotiated, so ws has nothing in flight to interleave with.
    const frame = d.wsFrame()
    if (this.outbox === null) {
      this.outbox = [frame]
      filled.push(this)
      if (!flushScheduled) { flushScheduled = true; setImmediate(flushAll) }
    } else {
      this.outbox.push(frame)
    }
    this.outboxBytes += frame.length
  }

  /** Writes the frames queued this turn, in order, as one buffer. */
  flush (): void {
    const out = this.outbox
    if (out === null) return
    const bytes = this.outboxBytes
    this.outbox = null
    this.outboxBytes = 0
    if (this.ws.readyState !== 1) return
    const socket = (this.ws as unknown as { _socket: Socket })._socket
    socket.write(out.length === 1 ? out[0]! : Buffer.concat(out, bytes))
  }

  protected writeMessage (type: string, payload: unknown, id?: string): void {
    this.flush() // after the events queued before it, as the client would expect
    if (this.ws.readyState === 1) this.ws.send(serverFrame(type, payload, id), TEXT)
  }

  protected terminate (code: number, reason: string): void {
    this.closeCode = code
    this.flush()
    try {
      this.ws.close(code, reason)
    } catch {
      this.ws.terminate()
    }
    // A peer that never answers the close handshake must not hold the socket.
    setTimeout(() => { if (this.ws.readyState !== 3) this.ws.terminate() }, 2000).unref()
  }
}
