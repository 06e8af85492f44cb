import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { Identity } from '../auth/verifier.js'
import type { ErrorCode } from '../errors.js'
import type { Subscriber } from '../events/hub.js'
import { errorFrame, serverFrame } from '../protocol/envelope.js'
import { CloseCodes } from '../protocol/close-codes.js'

const TEXT = { binary: false } as const
// Frames that arrive for a connection while it is still subscribing its
// channels are held, then sent right after `welcome`, so `welcome` is first.
const MAX_HELD_FRAMES = 256

export type Endpoint = 'events' | 'admin'

/** One authenticated WebSocket on /ws/events or /ws/admin. */
export class Connection implements Subscriber {
  readonly openedAt = Date.now()
  readonly patterns = new Map<string, readonly string[]>()
  readonly userId: string
  stamp = 0
  /** set by a pong or any frame; cleared by each heartbeat sweep */
  alive = true
  closed = false
  /** error replies in the current minute; repeated abuse closes the connection */
  strikes = 0
  strikesWindowStart = Date.now()
  private held: Array<Buffer | string> | null = []

  constructor (
    readonly id: string,
    readonly kind: Endpoint,
    readonly ws: WebSocket,
    public identity: Identity,
    readonly ip: string,
    readonly log: FastifyBaseLogger,
    private readonly sendBufferLimit: number,
  ) {
    this.userId = identity.userId
  }

  get welcomed (): boolean { return this.held === null }

  send (frame: Buffer | string): void {
    if (this.held !== null) {
      if (this.held.length < MAX_HELD_FRAMES) this.held.push(frame)
      else this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
      return
    }
    if (this.closed || this.ws.readyState !== 1) return
    // A consumer that does not read is closed rather than buffered without end.
    if (this.ws.bufferedAmount > this.sendBufferLimit) {
      this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
      return
    }
    this.ws.send(frame, TEXT)
  }

  welcome (payload: Record<string, unknown>): void {
    const held = this.held ?? []
    this.held = null
    this.send(serverFrame('welcome', payload))
    for (const f of held) this.send(f)
  }

  reply (type: string, payload: unknown, id?: string): void {
    this.send(serverFrame(type, payload, id))
  }

  fail (code: ErrorCode, message: string, id?: string): void {
    this.send(errorFrame(code, message, id))
  }

  close (code: number, reason: string): void {
    if (this.closed) return
    this.closed = true
    try {
      this.ws.close(code, reason)
    } catch {
      this.ws.terminate()
    }
    // A peer that never answers the close handshake must not hold the socket.
    setTimeout(() => { if (this.ws.readyState !== 3) this.ws.terminate() }, 2000).unref()
  }
}
