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
// Live deliveries held while a resume replays history (src/events/resume.ts).
// The replay is bounded by HISTORY_SIZE; live traffic past this while it
// runs is a client that cannot keep up anyway.
const MAX_RESUME_HELD = 10_000
// How long a replay waits for a client's socket to take what it was sent before the next page.
const REPLAY_DRAIN_TIMEOUT_MS = 10_000
const SETTLED: Promise<void> = Promise.resolve()
// How long a floor (see Connection.floors) outlives the read that set it:
// far longer than pub/sub lags behind a read, even with the node's intake
// backed up; after that a floor is only memory on an idle connection.
const FLOOR_MS = 30_000
const floored = new Set<Connection>()
let sweeper: NodeJS.Timeout | null = null
function sweepFloors (): void {
  const now = Date.now()
  for (const c of floored) c.expireFloors(now)
  if (floored.size === 0 && sweeper !== null) { clearInterval(sweeper); sweeper = null }
}

// Per stream, the highest floor any connection holds on it (for one epoch;
// null once floors of two epochs coexist, rare: Redis lost a stream) and how
// many connections hold one. A message above it is above every floor, so
// the dispatch loop does not look each recipient's floor up: after a storm
// every connection holds floors for FLOOR_MS (its own stream's, which no
// broadcast lifts), and at 10,000 subscribers looking each up, a Map per
// connection touched per delivery, held a node to 0.57x the deliveries/s it
// reached without them (bench/profile.ts, history on, past saturation). The
// top only rises while a floor on its stream is held: a floor's drop never
// lowers it, and it goes when the last is dropped.
interface FloorTop { epoch: string | null, offset: number, holders: number }
const floorTops = new Map<string, FloorTop>()
// The last message asked about and its answer: one dispatch asks once per recipient.
let askedStream = ''
let askedEpoch = ''
let askedOffset = -1
let askedAbove = false

function aboveEveryFloor (stream: string, epoch: string, offset: number): boolean {
  if (offset === askedOffset && stream === askedStream && epoch === askedEpoch) return askedAbove
  const top = floorTops.get(stream)
  askedStream = stream
  askedEpoch = epoch
  askedOffset = offset
  askedAbove = top === undefined || (top.epoch === epoch && offset > top.offset)
  return askedAbove
}

function floorRaised (stream: string, epoch: string, offset: number, added: boolean): void {
  askedOffset = -1
  const top = floorTops.get(stream)
  if (top === undefined) { floorTops.set(stream, { epoch, offset, holders: 1 }); return }
  if (added) top.holders++
  if (top.epoch !== epoch) top.epoch = null
  else if (offset > top.offset) top.offset = offset
}

function floorDropped (stream: string): void {
  const top = floorTops.get(stream)
  if (top !== undefined && --top.holders === 0) floorTops.delete(stream)
}

/** Streams on which some connection of this process holds a floor (for tests: the tops go with the floors). */
export const streamsWithFloors = (): number => floorTops.size

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
  /** why this node closed it (null: it did not, or not yet) */
  closeReason: string | null = null
  private held: Array<Delivery | (() => void)> | null = []
  /** live deliveries held while a resume replays history; null when none runs */
  private resuming: Delivery[] | null = null
  /**
   * Per stream, the position up to which this connection has had (or given
   * up) every message: a live message at or below it is not sent. Pub/sub
   * runs on its own Redis connection, behind the reads: a message a replay
   * read can still come live after the replay. A stream's floor goes with the
   * first message above it that is looked up (in the order its channel
   * keeps; one above every floor on its stream is not, see floorTops), or
   * FLOOR_MS after it was set (a sweep: an idle connection does not keep it).
   */
  private floors: Map<string, { offset: number, epoch: string }> | null = null
  private floorsAt = 0
  /** the subscribes of this connection, one after the other (a resume must not overlap another) */
  private subscribes: Promise<void> = SETTLED
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
    if (this.held !== null) return this.hold(d)
    if (this.resuming !== null) return this.holdLive(d)
    if (this.floors !== null && this.belowFloor(d)) return
    if (this.closed) return
    if (this.deliveryCongested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeDelivery(d)
    this.site.framesOut[this.kind]++
  }

  /**
   * Runs `f` after every subscribe this connection sent before has finished:
   * a resume holds live deliveries until its reply, and two must not interleave.
   */
  serially (f: () => Promise<void>): Promise<void> {
    const run = this.subscribes.then(f)
    const settled = run.then(() => {}, () => {})
    this.subscribes = settled
    // An idle connection goes back to the one settled promise rather than holding its chain.
    void settled.then(() => { if (this.subscribes === settled) this.subscribes = SETTLED })
    return run
  }

  /**
   * The seam of a resume (src/events/resume.ts): from now on live deliveries
   * are held, while `replay` sends history; `endReplay` then sends the reply
   * and the held deliveries that the replay did not already cover.
   */
  startReplay (): void { this.resuming ??= [] }

  /** A message read back from history, sent ahead of the live ones held meanwhile. */
  replay (d: Delivery): void {
    if (this.closed) return
    this.writeDelivery(d)
    this.site.framesOut[this.kind]++
  }

  /** Resolves once the transport has taken what it was given (false: closed, or not within the timeout, and then closed 4008). */
  async drained (): Promise<boolean> {
    const deadline = Date.now() + REPLAY_DRAIN_TIMEOUT_MS
    while (!this.closed && this.congested()) {
      if (Date.now() > deadline) { this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer'); break }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return !this.closed
  }

  /**
   * Ends the seam: `reply` goes out, then the held deliveries, except those
   * the replay covered: of a stream in `tops`, in its epoch, at or below its
   * top (the floor keeps them out when they come later). Those are exactly
   * what the replay read, since it read after the hold began: nothing is sent
   * twice and nothing is skipped.
   */
  endReplay (tops: ReadonlyMap<string, { offset: number, epoch: string }>, reply: () => void): void {
    const held = this.resuming ?? []
    this.resuming = null
    this.raiseFloors(tops.entries())
    reply()
    for (const d of held) {
      try { this.deliver(d) } catch (err) { this.undeliverable(err) }
    }
  }

  private raiseFloors (tops: Iterable<[string, { offset: number, epoch: string }]>): void {
    for (const [stream, top] of tops) {
      const f = (this.floors ??= new Map()).get(stream)
      if (f === undefined || f.epoch !== top.epoch || f.offset < top.offset) {
        this.floors.set(stream, { offset: top.offset, epoch: top.epoch })
        floorRaised(stream, top.epoch, top.offset, f === undefined)
      }
    }
    if (this.floors?.size === 0) { this.floors = null; return }
    this.floorsAt = Date.now()
    floored.add(this)
    sweeper ??= setInterval(sweepFloors, 5000).unref()
  }

  /** Called by the sweep: floors older than FLOOR_MS go, and a closed connection's. */
  expireFloors (now: number): void {
    if (this.floors !== null && !this.closed && now - this.floorsAt < FLOOR_MS) return
    this.forgetFloors()
  }

  /** The connection closed: the sweep's set must not keep it (and its socket) alive for another 30 s. */
  forgetFloors (): void {
    if (this.floors !== null) for (const stream of this.floors.keys()) floorDropped(stream)
    this.floors = null
    floored.delete(this)
  }

  /** `d` was sent already (replayed), or comes before the position the client was given; a message above the floor lifts it. */
  private belowFloor (d: Delivery): boolean {
    if (d.offset === null || aboveEveryFloor(d.stream, d.epoch, d.offset)) return false
    const f = this.floors!.get(d.stream)
    if (f === undefined) return false
    if (d.epoch === f.epoch && d.offset <= f.offset) return true
    this.floors!.delete(d.stream)
    floorDropped(d.stream)
    if (this.floors!.size === 0) { this.floors = null; floored.delete(this) }
    return false
  }

  /** A protocol message: a reply (with the request's id) or a server push. */
  emit (type: string, payload: unknown, id?: string): void {
    if (this.held !== null) return this.hold(() => this.emit(type, payload, id))
    if (this.closed) return
    if (this.congested()) return this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
    this.writeMessage(type, payload, id)
    this.site.framesOut[this.kind]++
  }

  /**
   * Sends `welcome`, then what was held for after it. With `positions`, live
   * messages continue after them: a message of one of those streams at or
   * below its top (published before the top was read, and still on its way
   * through pub/sub) is not sent, now or later (the floor, see below).
   */
  welcome (payload: Record<string, unknown>, positions?: Readonly<Record<string, { offset: number, epoch: string }>>): void {
    const held = this.held ?? []
    this.held = null
    if (positions !== undefined) this.raiseFloors(Object.entries(positions))
    this.emit('welcome', payload)
    for (const x of held) {
      try {
        if (typeof x === 'function') x()
        else this.deliver(x)
      } catch (err) { this.undeliverable(err) }
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
    if (diag.frameRefused.hasSubscribers) {
      diag.frameRefused.publish({ serverId: this.site.serverId, endpoint: this.kind, transport: this.transport, connectionId: this.id, userId: this.userId, guest: this.guest, ip: this.ip, code })
    }
    strike(this)
  }

  close (code: number, reason: string): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    this.terminate(code, reason)
  }

  /** Liveness check of the heartbeat sweep; transports with their own heartbeat stay alive. */
  abstract ping (): void

  protected abstract congested (): boolean
  /** The slow-consumer check of a delivery: congested(), unless the transport knows it cannot have changed (ws-connection.ts). */
  protected deliveryCongested (): boolean { return this.congested() }
  protected abstract writeDelivery (d: Delivery): void
  protected abstract writeMessage (type: string, payload: unknown, id?: string): void
  protected abstract terminate (code: number, reason: string): void

  private holdLive (d: Delivery): void {
    if (this.closed) return
    if (this.resuming!.length < MAX_RESUME_HELD) this.resuming!.push(d)
    else this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
  }

  /** Keeps a frame for after `welcome` (callers check `held` first). */
  private hold (f: Delivery | (() => void)): void {
    if (this.held!.length < MAX_HELD_FRAMES) this.held!.push(f)
    else this.close(CloseCodes.SLOW_CONSUMER, 'slow consumer')
  }
}
