import type { FastifyBaseLogger } from 'fastify'
import type { Identity } from '../auth/verifier.js'
import type { ErrorCode } from '../errors.js'
import { stampable, UnusablePayload, type Delivery, type Subscriber } from '../events/hub.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { expirable } from './expiry.js'
import { inboxed, strike } from './lifecycle.js'
import { watched } from './liveness.js'

// Frames that arrive for a connection while it is still subscribing its
// channels are held, then sent right after `welcome`, so `welcome` is first.
const MAX_HELD_FRAMES = 256

export type Endpoint = 'events' | 'admin'
export type Transport = 'ws' | 'socket.io'

/** What every connection of one endpoint on one transport shares: made once, not per connection. */
export interface Site {
  readonly endpoint: Endpoint
  /** the node's id, on what the connection reports to the diagnostics channels */
  readonly serverId: string
  /** the node's logger, parent of the connection's own */
  readonly log: FastifyBaseLogger
  /** the node's count of frames written, by endpoint (Connections.framesOut) */
  readonly framesOut: Record<Endpoint, number>
}

/**
 * One authenticated client connection, whatever carries it. The protocol
 * (commands, expiry, revocation, limits, delivery) talks to this class; the
 * WebSocket and Socket.IO subclasses only know how to write and close.
 *
 * State other modules keep per connection is theirs, declared and touched in
 * their own file under a private symbol: the hub's delivery mark
 * (events/hub.ts), the expiry marks (expiry.ts), the inbox, rate and strike
 * counts (lifecycle.ts), the heartbeat mark (liveness.ts). Each is set up
 * here, in the constructor, so that every connection has one shape.
 */
export abstract class Connection implements Subscriber {
  abstract readonly transport: Transport
  readonly openedAt = Date.now()
  readonly patterns = new Map<string, readonly string[]>()
  readonly kind: Endpoint
  readonly userId: string
  /**
   * Anonymous guests (ALLOW_ANONYMOUS) receive broadcast-audience events only.
   * Fixed at open: the registry files the connection by it, and must find it
   * in the same place when it closes, whatever a refresh did to the identity.
   */
  readonly guest: boolean
  /** the groups the hub delivers to this connection (token claim and API membership); written by the hub only */
  groups: Set<string> | null = null
  closed = false
  private held: Array<() => void> | null = []
  private _log: FastifyBaseLogger | null = null

  /** `reqId` ties the connection's lines to its upgrade request. */
  constructor (
    readonly id: string,
    readonly site: Site,
    public identity: Identity,
    readonly ip: string,
    private readonly reqId?: string,
  ) {
    this.kind = site.endpoint
    this.userId = identity.userId
    this.guest = identity.anonymous === true
    stampable(this)
    watched(this)
    inboxed(this)
    expirable(this)
  }

  /**
   * The connection's own child logger (connectionId, userId, endpoint,
   * transport on every line). Made on first use: an idle connection that
   * logs nothing carries no logger, which keeps per-connection memory small.
   */
  get log (): FastifyBaseLogger {
    return (this._log ??= this.site.log.child({
      ...(this.reqId !== undefined ? { reqId: this.reqId } : {}),
      connectionId: this.id, userId: this.userId, endpoint: this.kind, transport: this.transport,
    }))
  }

  get welcomed (): boolean { return this.held === null }

  /** Is this connection's user a member of `group` now, as far as this node knows (src/groups/membership.ts). */
  isMember (group: string): boolean { return this.groups?.has(group) === true }


  /** An event or notification from the hub. */
  deliver (d: Delivery): void {
    // Checked before making the closure: deliver runs once per recipient of every event.
    if (this.held !== null) return this.hold(() => this.deliver(d))
    if (this.closed) return
    if (this.congested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeDelivery(d)
    this.site.framesOut[this.kind]++
  }

  /** A protocol message: a reply (with the request's id) or a server push. */
  emit (type: string, payload: unknown, id?: string): void {
    if (this.held !== null) return this.hold(() => this.emit(type, payload, id))
    if (this.closed) return
    if (this.congested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeMessage(type, payload, id)
    this.site.framesOut[this.kind]++
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
    if (diag.deliveryFailed.hasSubscribers) diag.deliveryFailed.publish({ serverId: this.site.serverId, endpoint: this.kind, transport: this.transport, connectionId: this.id, error: err, log: this.log })
    try {
      this.close(CloseCodes.INTERNAL_ERROR, 'delivery failed')
    } catch { /* its transport is gone already */ }
  }

  reply (type: string, payload: unknown, id?: string): void { this.emit(type, payload, id) }

  /** Answers a bad request with `error`; every one counts toward closing an abusive client. */
  fail (code: ErrorCode, message: string, id?: string): void {
    this.emit('error', { code, message }, id)
    strike(this)
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
