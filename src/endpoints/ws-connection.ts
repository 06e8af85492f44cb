import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { Identity } from '../auth/verifier.js'
import type { Delivery } from '../events/hub.js'
import { serverFrame } from '../protocol/envelope.js'
import { Connection } from './connection.js'
import { enqueue, take, type TurnQueue } from './turn-writes.js'
import type { SessionSite } from './session.js'

const TEXT = { binary: false } as const

/** A connection on /ws/events or /ws/admin: JSON text frames over `ws`. */
export class WsConnection extends Connection implements TurnQueue {
  readonly transport = 'ws' as const
  /** the code this node closed with; the peer may never echo it (a dead or stalled peer is terminated) */
  closeCode: number | null = null
  // frames delivered this event-loop turn, written together at its end (turn-writes.ts)
  qFirst = -1
  qCount = 0
  qOwn: Buffer[] | null = null
  qBytes = 0
  /** the endpoint's shared context (the node, the command table) */
  declare readonly site: SessionSite

  constructor (id: string, site: SessionSite, readonly ws: WebSocket, identity: Identity, ip: string, reqId?: string) {
    super(id, site, identity, ip, reqId)
  }

  ping (): void {
    // A ping behind a corked 101 could not be answered: the 101 goes first.
    // Inside the try: the heartbeat pings every connection in one loop.
    try {
      this.uncork()
      this.ws.ping()
    } catch { /* closing already */ }
  }

  // A consumer that does not read is closed rather than buffered without end.
  // Only what its socket has not taken counts: the turn's queue is the node's
  // own backlog (bounded by FLUSH_AT_BYTES and the intake), not the client's.
  protected congested (): boolean {
    return this.ws.bufferedAmount > this.site.sendBufferBytes
  }

  // Checked only for a socket's first frame since its last write: until the
  // turn's queue is written, what the socket holds can only shrink (its
  // earlier writes complete), so the check would say the same (a replay's
  // frames, queued unchecked, are followed by drained()). At 10,000
  // subscribers, reading bufferedAmount for every frame (ws, its socket,
  // the socket's writable state: each elsewhere in memory) was a tenth of a
  // saturated node's time.
  protected override deliveryCongested (): boolean {
    return this.qFirst < 0 && this.congested()
  }

  protected writeDelivery (d: Delivery): void {
    // The frame is already complete (built once per event for all recipients);
    // no compression is negotiated, so ws has nothing in flight to interleave with.
    // Queued whatever the socket's state: flush() writes only to an open one,
    // and not reading ws's state here leaves ws's objects untouched per frame.
    enqueue(this, d)
  }

  /**
   * Writes the frames queued this turn, in order, as one buffer, straight to
   * the TCP socket under ws (`_socket`, private to ws: ws is pinned and
   * test/dependencies/internals.test.ts checks it): the frames are complete
   * already, and ws.send would frame and copy each one again.
   */
  flush (): void {
    const out = take(this)
    if (out === null || this.ws.readyState !== 1) return
    this.socket.write(out)
  }

  // A protocol message goes through ws: unlike a delivery, it has one
  // recipient, so there is no framing to share (written straight to the
  // socket as one frame, the reconnect storm measured the same).
  protected writeMessage (type: string, payload: unknown, id?: string): void {
    this.flush() // after the events queued before it, as the client would expect
    if (this.ws.readyState === 1) this.ws.send(serverFrame(type, payload, id), TEXT)
    this.uncork()
  }

  private get socket (): Socket { return (this.ws as unknown as { _socket: Socket })._socket }

  /**
   * The upgrade left the socket corked with its 101 (upgrade.ts): the first
   * message, the welcome, or a close, sends both in one write.
   */
  private uncork (): void {
    const socket = this.socket
    if (socket.writableCorked !== 0) socket.uncork()
  }

  protected terminate (code: number, reason: string): void {
    this.closeCode = code
    this.uncork()
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
