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
// Error replies tolerated per minute; past that the client is abusive (4029).
const MAX_STRIKES_PER_MINUTE = 20

export type Endpoint = 'events' | 'admin'

/** Frames written per endpoint since boot; read by metrics on scrape, so the send path only increments. */
export const framesOut = { events: 0, admin: 0 }

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
  /** frames refused by the rate limiter since the last accepted one */
  limited = 0
  /** frames received and not yet handled; serialises handling through the limiter */
  inflight = 0
  inbox: Promise<void> = Promise.resolve()
  expiryTimer: NodeJS.Timeout | null = null
  /** the exp that auth_expiring was sent for */
  warnedFor = 0
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
    framesOut[this.kind]++
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

  /** Answers a bad request with `error`; every one counts toward closing an abusive client. */
  fail (code: ErrorCode, message: string, id?: string): void {
    this.send(errorFrame(code, message, id))
    const now = Date.now()
    if (now - this.strikesWindowStart > 60_000) { this.strikes = 0; this.strikesWindowStart = now }
    if (++this.strikes > MAX_STRIKES_PER_MINUTE) {
      this.log.warn({ strikes: this.strikes }, 'closing abusive connection')
      this.close(CloseCodes.RATE_LIMITED, 'too many invalid messages')
    }
  }

  close (code: number, reason: string): void {
    if (this.closed) return
    this.closed = true
    if (this.expiryTimer) clearTimeout(this.expiryTimer)
    try {
      this.ws.close(code, reason)
    } catch {
      this.ws.terminate()
    }
    // A peer that never answers the close handshake must not hold the socket.
    setTimeout(() => { if (this.ws.readyState !== 3) this.ws.terminate() }, 2000).unref()
  }
}
