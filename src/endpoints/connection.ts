import type { FastifyBaseLogger } from 'fastify'
import type { Identity } from '../auth/verifier.js'
import type { ErrorCode } from '../errors.js'
import { UnusablePayload, type Delivery, type Subscriber } from '../events/hub.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'

// Frames that arrive for a connection while it is still subscribing its
// channels are held, then sent right after `welcome`, so `welcome` is first.
const MAX_HELD_FRAMES = 256
// Error replies tolerated per minute; past that the client is abusive (4029).
const MAX_STRIKES_PER_MINUTE = 20

export type Endpoint = 'events' | 'admin'
export type Transport = 'ws' | 'socket.io'

// Every connection's inbox starts from this one settled promise.
const SETTLED: Promise<void> = Promise.resolve()

/** Frames written per endpoint since boot; read by metrics on scrape, so the send path only increments. */
export const framesOut = { events: 0, admin: 0 }

/**
 * One authenticated client connection, whatever carries it. The protocol
 * (commands, expiry, revocation, limits, delivery) talks to this class; the
 * WebSocket and Socket.IO subclasses only know how to write and close.
 */
export abstract class Connection implements Subscriber {
  abstract readonly transport: Transport
  readonly openedAt = Date.now()
  readonly patterns = new Map<string, readonly string[]>()
  readonly userId: string
  /**
   * Anonymous guests (ALLOW_ANONYMOUS) receive broadcast-audience events only.
   * Fixed at open: the hub files the connection by it, and must find it in the
   * same place when it closes, whatever a refresh did to the identity.
   */
  readonly guest: boolean
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
  inbox: Promise<void> = SETTLED
  /** the exp that auth_expiring was sent for */
  warnedFor = 0
  /** the exp the node's expiry schedule holds a live entry for (0: none) */
  armedFor = 0
  private held: Array<() => void> | null = []
  private _log: FastifyBaseLogger | null = null

  /** `parentLog` is the node's logger; `reqId` ties the connection's lines to its upgrade request. */
  constructor (
    readonly id: string,
    readonly kind: Endpoint,
    public identity: Identity,
    readonly ip: string,
    private readonly parentLog: FastifyBaseLogger,
    private readonly reqId?: string,
  ) {
    this.userId = identity.userId
    this.guest = identity.anonymous === true
  }

  /**
   * The connection's own child logger (connectionId, userId, endpoint,
   * transport on every line). Made on first use: an idle connection that
   * logs nothing carries no logger, which keeps per-connection memory small.
   */
  get log (): FastifyBaseLogger {
    return (this._log ??= this.parentLog.child({
      ...(this.reqId !== undefined ? { reqId: this.reqId } : {}),
      connectionId: this.id, userId: this.userId, endpoint: this.kind, transport: this.transport,
    }))
  }

  get welcomed (): boolean { return this.held === null }


  /** An event or notification from the hub. */
  deliver (d: Delivery): void {
    // Checked before making the closure: deliver runs once per recipient of every event.
    if (this.held !== null) return this.hold(() => this.deliver(d))
    if (this.closed) return
    if (this.congested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeDelivery(d)
    framesOut[this.kind]++
  }

  /** A protocol message: a reply (with the request's id) or a server push. */
  emit (type: string, payload: unknown, id?: string): void {
    if (this.held !== null) return this.hold(() => this.emit(type, payload, id))
    if (this.closed) return
    if (this.congested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeMessage(type, payload, id)
    framesOut[this.kind]++
  }

  welcome (payload: Record<string, unknown>): void {
    const held = this.held ?? []
    this.held = null
    this.emit('welcome', payload)
    for (const f of held) {
      try { f() } catch (err) { this.undeliverable(err) }
    }
  }

  /**
   * Writing a delivery to this connection threw (its transport's encoder, say):
   * reported, and the connection closed 1011 rather than left missing events.
   * A message that cannot be used at all is the hub's to count, not this connection's fault.
   */
  undeliverable (err: unknown): void {
    if (err instanceof UnusablePayload || this.closed) return
    if (diag.deliveryFailed.hasSubscribers) diag.deliveryFailed.publish({ endpoint: this.kind, transport: this.transport, connectionId: this.id, error: err, log: this.log })
    try {
      this.close(CloseCodes.INTERNAL_ERROR, 'delivery failed')
    } catch { /* its transport is gone already */ }
  }

  reply (type: string, payload: unknown, id?: string): void { this.emit(type, payload, id) }

  /** Answers a bad request with `error`; every one counts toward closing an abusive client. */
  fail (code: ErrorCode, message: string, id?: string): void {
    this.emit('error', { code, message }, id)
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
    this.terminate(code, reason)
  }

  /** Liveness check of the heartbeat sweep; transports with their own heartbeat stay alive. */
  abstract ping (): void

  protected abstract congested (): boolean
  protected abstract writeDelivery (d: Delivery): void
  protected abstract writeMessage (type: string, payload: unknown, id?: string): void
  protected abstract terminate (code: number, reason: string): void

  /** Keeps a frame for after `welcome` (callers check `held` first). */
  private hold (f: () => void): void {
    if (this.held!.length < MAX_HELD_FRAMES) this.held!.push(f)
    else this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
  }
}
