import type { FastifyBaseLogger } from 'fastify'
import type { Broker } from '../backend/broker.js'
import type { Channels } from '../cluster/channels.js'
import { channels as diag, type DropReason } from '../observability/channels.js'
import { matches, PatternIndex } from '../protocol/patterns.js'
import { textFrame } from '../protocol/ws-frame.js'
import { decode, type Envelope } from './codec.js'
import { jsonShape, MAX_DATA_DEPTH } from './depth.js'
import { Intake } from './intake.js'

/**
 * One event or notification on its way to this node's recipients. Each form is
 * built at most once per dispatch, whatever the number of recipients.
 */
export interface Delivery {
  readonly kind: 'event' | 'notification'
  /** the message, {"type":kind,"payload":…}, as bytes */
  frame (): Buffer
  /** the same message as a complete WebSocket text frame, header included */
  wsFrame (): Buffer
  /** the payload object, for transports that encode their own frames (Socket.IO); throws UnusablePayload when its JSON does not parse */
  payload (): unknown
}

/** A message whose JSON does not parse: a fault of the message, not of the recipient it was being sent to. */
export class UnusablePayload extends Error {}

/** What the hub needs of a connection. */
export interface Subscriber {
  readonly kind: 'events' | 'admin'
  readonly userId: string
  /** pattern text -> its segments */
  readonly patterns: Map<string, readonly string[]>
  /** last dispatch this subscriber was sent, so overlapping patterns deliver once */
  stamp: number
  /** anonymous: receives broadcast-audience events only and has no user channel */
  readonly guest: boolean
  deliver (d: Delivery): void
  /** `deliver` threw: the recipient reports it and closes (1011); an UnusablePayload is ignored */
  undeliverable (err: unknown): void
}

interface ChannelRef { refs: number, ready: Promise<void> }
/** A user's connections: the one connection itself, or a Set from the second. */
type Held = Subscriber | Set<Subscriber>
function forEachHeld (held: Held | undefined, f: (s: Subscriber) => void): void {
  if (held instanceof Set) for (const s of held) f(s)
  else if (held !== undefined) f(held)
}
const SUBSCRIBED: Promise<void> = Promise.resolve()

const TYPE_CACHE_MAX = 4096
// The payload is the event or notification object around `data`.
const MAX_PAYLOAD_DEPTH = MAX_DATA_DEPTH + 1

/**
 * The node-local side of delivery: which connections hold which patterns, and
 * which Redis channels this node must listen on for them.
 */
export class Hub {
  // A user's one connection is held as is, a Set only from the second: most
  // users have one, and a Set costs ~150 bytes on every idle connection.
  private readonly byUser = new Map<string, Held>()
  private readonly userIndex = new PatternIndex<Subscriber>()
  private readonly adminIndex = new PatternIndex<Subscriber>()
  private readonly admins = new Set<Subscriber>()
  /** guests are in no user's set and hold no user channel */
  private readonly guests = new Set<Subscriber>()
  private readonly refs = new Map<string, ChannelRef>()
  private readonly typeSegments = new Map<string, string[]>()
  private dispatchSeq = 0
  private controlListener: (env: Envelope) => void = () => {}
  delivered = 0
  /** messages received from the broker (Redis), own echoes included: a node's Redis traffic */
  received = 0
  /** messages from the broker this node did not deliver, by reason (overload: shed, see intake.ts) */
  readonly dropped: Record<Exclude<DropReason, 'overload'>, number> = { too_deep: 0, malformed: 0, error: 0 }
  private readonly intake: Intake

  constructor (
    private readonly broker: Broker,
    private readonly ch: Channels,
    private readonly serverId: string,
    private readonly log: FastifyBaseLogger,
  ) {
    this.intake = new Intake((channel, env) => {
      try { this.dispatch(channel, env) } catch (err) { this.drop('error', channel, err) }
    }, (r) => {
      if (diag.overload.hasSubscribers) diag.overload.publish({ ...r, log })
    })
    broker.onMessage((channel, message) => this.onBrokerMessage(channel, message))
  }

  /** messages shed past saturation since boot */
  get shed (): number { return this.intake.shed }
  /** messages waiting for delivery */
  get waiting (): number { return this.intake.waiting }
  /** how long the oldest waiting message has waited, ms: how far the node is behind its input */
  lagMs (): number { return this.intake.lagMs() }

  async start (): Promise<void> {
    await Promise.all([this.broker.subscribe(this.ch.broadcast), this.broker.subscribe(this.ch.control)])
  }

  /** Control messages (kind c) from any channel this node hears, its own included. */
  onControl (listener: (env: Envelope) => void): void { this.controlListener = listener }

  get users (): number { return this.byUser.size }

  /** Resolves once events for this subscriber reach the node; send `welcome` after. */
  async attach (s: Subscriber): Promise<void> {
    if (s.kind === 'admin') {
      this.admins.add(s)
      await this.ref(this.ch.admin)
      return
    }
    if (s.guest) { this.guests.add(s); return }
    const held = this.byUser.get(s.userId)
    if (held === undefined) this.byUser.set(s.userId, s)
    else if (held instanceof Set) held.add(s)
    else if (held !== s) this.byUser.set(s.userId, new Set([held, s]))
    await this.ref(this.ch.user(s.userId))
  }

  detach (s: Subscriber): void {
    for (const segs of s.patterns.values()) this.indexOf(s).remove(segs, s)
    if (s.kind === 'admin') {
      if (this.admins.delete(s)) this.unref(this.ch.admin)
      return
    }
    if (s.guest) { this.guests.delete(s); return }
    const held = this.byUser.get(s.userId)
    let removed = false
    if (held === s) { this.byUser.delete(s.userId); removed = true } else if (held instanceof Set && held.delete(s)) {
      removed = true
      if (held.size === 1) this.byUser.set(s.userId, held.values().next().value!)
    }
    if (removed) this.unref(this.ch.user(s.userId))
  }

  addPattern (s: Subscriber, pattern: string, segs: readonly string[]): void {
    if (s.patterns.has(pattern)) return
    s.patterns.set(pattern, segs)
    this.indexOf(s).add(segs, s)
  }

  removePattern (s: Subscriber, pattern: string): void {
    const segs = s.patterns.get(pattern)
    if (!segs) return
    s.patterns.delete(pattern)
    this.indexOf(s).remove(segs, s)
  }

  connectionsOf (userId: string): readonly Subscriber[] | undefined {
    const held = this.byUser.get(userId)
    if (held === undefined) return undefined
    const out: Subscriber[] = []
    forEachHeld(held, (s) => out.push(s))
    return out
  }

  /** Delivers a message this node published itself (while Redis is not delivering), instead of its later echo. */
  dispatchLocal (channel: string, raw: string): void {
    const env = decode(raw)
    if (env) this.dispatch(channel, env)
  }

  // Redis's message handler: it never throws, whatever a message holds.
  private onBrokerMessage (channel: string, raw: string): void {
    // The broker hands every listener every channel; the probe's are not ours.
    if (!this.isHubChannel(channel)) return
    this.received++
    try {
      const env = decode(raw)
      if (env === null) return this.drop('malformed', channel)
      // Our own messages were delivered locally when published.
      if (env.origin === this.serverId) return
      // Control messages are few and must not wait behind events.
      if (env.kind === 'c') return this.controlListener(env)
      // Anyone with access to Redis can put a message on a channel: what a
      // recipient's transport might choke on is refused here, once, for all.
      const shape = jsonShape(env.json, MAX_PAYLOAD_DEPTH)
      if (shape !== 'ok') return this.drop(shape, channel)
      this.intake.offer(channel, env)
    } catch (err) {
      this.drop('error', channel, err)
    }
  }

  private drop (reason: Exclude<DropReason, 'overload'>, channel: string, err?: unknown): void {
    this.dropped[reason]++
    if (diag.messageDropped.hasSubscribers) diag.messageDropped.publish({ reason, channel, ...(err !== undefined ? { error: err } : {}), log: this.log })
  }

  private dispatch (channel: string, env: Envelope): void {
    if (env.kind === 'c') return this.controlListener(env)
    let frame: Buffer | null = null
    let wsFrame: Buffer | null = null
    let payload: unknown
    let unusable = false
    const kind = env.kind === 'e' ? 'event' : 'notification'
    const d: Delivery = {
      kind,
      frame: () => (frame ??= Buffer.from(`{"type":"${kind}","payload":${env.json}}`)),
      wsFrame: () => (wsFrame ??= textFrame(d.frame())),
      payload: () => {
        if (payload === undefined && !unusable) {
          try { payload = JSON.parse(env.json) } catch { unusable = true }
        }
        if (unusable) throw new UnusablePayload('the message JSON does not parse')
        return payload
      },
    }
    let count = 0
    let unusableCounted = false
    const seq = ++this.dispatchSeq
    // One recipient's failure stays its own: the others still get the message.
    const deliver = (s: Subscriber): void => {
      if (s.stamp === seq) return
      s.stamp = seq
      try {
        s.deliver(d)
        count++
      } catch (err) {
        if (err instanceof UnusablePayload) {
          if (!unusableCounted) { unusableCounted = true; this.drop('malformed', channel) }
          return
        }
        s.undeliverable(err)
      }
    }

    if (env.kind === 'n') {
      // Notifications need no subscription and go to /ws/events connections only.
      if (channel === this.ch.broadcast) {
        for (const held of this.byUser.values()) forEachHeld(held, deliver)
        for (const s of this.guests) deliver(s)
      } else if (channel.startsWith(this.ch.userPrefix)) {
        if (!this.isUserChannelOf(channel, env.userId)) return
        forEachHeld(this.byUser.get(env.userId), deliver)
      }
    } else {
      const type = this.segmentsOf(env.type)
      if (channel === this.ch.broadcast) {
        this.userIndex.forEachMatch(type, deliver)
        this.adminIndex.forEachMatch(type, deliver)
      } else if (channel === this.ch.admin) {
        this.adminIndex.forEachMatch(type, deliver)
      } else if (channel.startsWith(this.ch.userPrefix)) {
        if (!this.isUserChannelOf(channel, env.userId)) return
        forEachHeld(this.byUser.get(env.userId), (s) => {
          for (const p of s.patterns.values()) {
            if (matches(p, type)) { deliver(s); break }
          }
        })
      }
    }

    this.delivered += count
    if (diag.eventDelivered.hasSubscribers) {
      diag.eventDelivered.publish({ kind: env.kind === 'e' ? 'event' : 'notification', type: env.type, recipients: count, latencyMs: Date.now() - env.publishedAt })
    }
  }

  /** The header's userId, not the channel suffix alone, picks recipients: both must agree. */
  private isHubChannel (channel: string): boolean {
    return channel === this.ch.broadcast || channel === this.ch.admin || channel === this.ch.control || channel.startsWith(this.ch.userPrefix)
  }

  private isUserChannelOf (channel: string, userId: string): boolean {
    return this.ch.isUserChannelOf(channel, userId)
  }

  private segmentsOf (type: string): string[] {
    let segs = this.typeSegments.get(type)
    if (!segs) {
      segs = type.split('.')
      if (this.typeSegments.size >= TYPE_CACHE_MAX) this.typeSegments.clear()
      this.typeSegments.set(type, segs)
    }
    return segs
  }

  private indexOf (s: Subscriber): PatternIndex<Subscriber> {
    return s.kind === 'admin' ? this.adminIndex : this.userIndex
  }

  private ref (channel: string): Promise<void> {
    const r = this.refs.get(channel)
    if (r) { r.refs++; return r.ready }
    const ready = this.broker.subscribe(channel)
    const entry = { refs: 1, ready }
    this.refs.set(channel, entry)
    // Done, a channel holds one shared settled promise rather than its own;
    // a failed subscribe must not poison later attaches of the same channel.
    ready.then(() => { entry.ready = SUBSCRIBED }, () => { if (this.refs.get(channel) === entry) this.refs.delete(channel) })
    return ready
  }

  private unref (channel: string): void {
    const r = this.refs.get(channel)
    if (!r || --r.refs > 0) return
    this.refs.delete(channel)
    // Redis processes UNSUBSCRIBE and a later SUBSCRIBE in order on one connection.
    this.broker.unsubscribe(channel).catch(() => {})
  }
}
