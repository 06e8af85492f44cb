import type { FastifyBaseLogger } from 'fastify'
import type { Broker } from '../backend/broker.js'
import type { Channels } from '../cluster/channels.js'
import { channels as diag, type DropReason } from '../observability/channels.js'
import { matches, PatternIndex } from '../protocol/patterns.js'
import { textFrame } from '../protocol/ws-frame.js'
import { decode, type Envelope } from './codec.js'
import { jsonShape, MAX_DATA_DEPTH } from './depth.js'
import { Intake } from './intake.js'
import { Gaps } from './gaps.js'
import type { StreamStore } from '../backend/streams.js'
import { ADMIN_STREAM, streamName } from '../protocol/streams.js'

/**
 * One event or notification on its way to this node's recipients. Each form is
 * built at most once per dispatch, whatever the number of recipients.
 */
export interface Delivery {
  readonly kind: 'event' | 'notification'
  /** the stream it belongs to ('' when none: history off) and its position there (offset null: none, as during an outage) */
  readonly stream: string
  readonly offset: number | null
  readonly epoch: string
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
  /** anonymous: receives broadcast-audience events only and has no user channel */
  readonly guest: boolean
  /** the groups whose channels the hub holds for it (joinGroup, leaveGroup); null: none. Only the hub writes it. */
  groups: Set<string> | null
  deliver (d: Delivery): void
  /** `deliver` threw: the recipient reports it and closes (1011); an UnusablePayload is ignored */
  undeliverable (err: unknown): void
}

/**
 * Where the hub finds the recipients of notifications and of events on a
 * user's channel: the node's connection registry (src/endpoints/connections.ts),
 * not a second one kept here.
 */
export interface Recipients {
  /** a signed-in user's /ws/events subscribers on this node */
  forEachOfUser (userId: string, f: (s: Subscriber) => void): void
  /** every /ws/events subscriber on this node, guests included */
  forEachOnEvents (f: (s: Subscriber) => void): void
}

// The last dispatch a subscriber was sent, so overlapping patterns deliver
// once: the hub's own mark on each subscriber, touched nowhere else. A field
// of the subscriber (set up in its constructor by stampable(), one shape for
// all), not a map: it is read and written once per recipient of every message.
const kStamp = Symbol('herald.hub.stamp')
// When the subscriber came: the hub's count of attaches at its own (attach()).
const kCame = Symbol('herald.hub.came')
interface Stamped { [kStamp]: number, [kCame]: number }

/** Gives a subscriber the hub's delivery mark; called by its constructor. */
export function stampable (s: object): void { (s as Stamped)[kStamp] = 0; (s as Stamped)[kCame] = 0 }

interface ChannelRef { refs: number, ready: Promise<void> }
const SUBSCRIBED: Promise<void> = Promise.resolve()

const TYPE_CACHE_MAX = 4096
// The payload is the event or notification object around `data`.
const MAX_PAYLOAD_DEPTH = MAX_DATA_DEPTH + 1

/**
 * The node-local side of delivery: which connections hold which patterns, and
 * which Redis channels this node must listen on for them.
 */
export class Hub {
  private readonly userIndex = new PatternIndex<Subscriber>()
  private readonly adminIndex = new PatternIndex<Subscriber>()
  private readonly refs = new Map<string, ChannelRef>()
  /** per group with members on this node: those members' /ws/events subscribers, and their patterns (as the user index holds them, for the same matching cost) */
  private readonly groupMembers = new Map<string, { members: Set<Subscriber>, index: PatternIndex<Subscriber> }>()
  /** subscribers detached (their connection closed): they join nothing again */
  private readonly detached = new WeakSet<Subscriber>()
  /** the group channels this node listens on, and their groups */
  private readonly groupOfChannel = new Map<string, string>()
  private readonly typeSegments = new Map<string, string[]>()
  private dispatchSeq = 0
  /** subscribers attached so far: a local delivery's mark (localOrigin) */
  private attached = 0
  private controlListener: (env: Envelope) => void = () => {}
  private tap: ((env: Envelope, type: readonly string[]) => void) | null = null
  delivered = 0
  /** messages received from the broker (Redis), own echoes included: a node's Redis traffic */
  received = 0
  /** messages from the broker this node did not deliver, by reason (overload: shed, see intake.ts) */
  readonly dropped: Record<Exclude<DropReason, 'overload'>, number> = { too_deep: 0, malformed: 0, error: 0 }
  private readonly intake: Intake
  /** what this node missed on pub/sub, read back from the streams (gaps.ts) */
  readonly gaps: Gaps

  constructor (
    private readonly broker: Broker,
    private readonly ch: Channels,
    private readonly serverId: string,
    private readonly log: FastifyBaseLogger,
    private readonly recipients: Recipients,
    /** how long the last turn's writes to sockets took, ms: what sizes the delivery slices (intake.ts) */
    writeMs: () => number = () => 0,
    /** history, from which what pub/sub did not bring is read back; null: off */
    streams: StreamStore | null = null,
  ) {
    this.intake = new Intake((channel, env) => {
      try { this.dispatch(channel, env, true) } catch (err) { this.drop('error', channel, err) }
    }, (r) => {
      if (diag.overload.hasSubscribers) diag.overload.publish({ serverId, ...r, log })
    }, writeMs)
    this.gaps = new Gaps(streams, ch.admin, streamName(ADMIN_STREAM), (channel) => this.refs.has(channel) || channel === ch.broadcast, (channel, env) => this.accept(channel, env), (fields, msg) => log.warn(fields, msg))
    broker.onMessage((channel, message) => this.onBrokerMessage(channel, message))
  }

  /** messages shed past saturation since boot */
  get shed (): number { return this.intake.shed }
  /** messages waiting for delivery: in the intake, and behind a read of what the node missed (at most 2 s) */
  get waiting (): number { return this.intake.waiting + this.gaps.held }
  /** how long the oldest waiting message has waited, ms: how far the node is behind its input */
  lagMs (): number { return this.intake.lagMs() }

  async start (): Promise<void> {
    await Promise.all([this.broker.subscribe(this.ch.broadcast), this.broker.subscribe(this.ch.control)])
  }

  /**
   * Shows `tap` every event this node hears on the admins' channels (the
   * admin channel and the broadcast: every event is on exactly one of them),
   * after its delivery; null stops. The admins' live tails (src/admin/tail.ts)
   * set it only while one runs, which is also while the node, holding that
   * admin connection, listens on the admin channel.
   */
  setTap (tap: ((env: Envelope, type: readonly string[]) => void) | null): void { this.tap = tap }

  /** Control messages (kind c) from any channel this node hears, its own included. */
  onControl (listener: (env: Envelope) => void): void { this.controlListener = listener }

  /**
   * Listens on the channel a subscriber newly in the recipients needs (its
   * user's, or the admins'); resolves once events for it reach the node: send
   * `welcome` after. Called once per subscriber, and `detach` once after it.
   */
  async attach (s: Subscriber): Promise<void> {
    (s as Subscriber & Stamped)[kCame] = ++this.attached
    const channel = this.channelOf(s)
    if (channel !== null) await this.ref(channel)
  }

  /** The subscriber left the recipients: its patterns and its hold on its channels go. */
  detach (s: Subscriber): void {
    this.detached.add(s)
    for (const segs of s.patterns.values()) this.indexOf(s).remove(segs, s)
    const channel = this.channelOf(s)
    if (channel !== null) this.unref(channel)
    if (s.groups !== null) for (const g of [...s.groups]) this.leaveGroup(s, g)
  }

  /**
   * The subscriber's user is a member of `group`: the group's events reach it
   * (those matching its patterns) once this resolves. A node listens on a
   * group's channel while it holds at least one member's connection.
   */
  async joinGroup (s: Subscriber, group: string): Promise<void> {
    // A join still on its way when the connection closed (a refresh awaiting
    // Redis, a membership read) would hold the group's channel, and the
    // closed connection in its members, for the life of the node.
    if (s.groups?.has(group) === true || this.detached.has(s)) return
    ;(s as Subscriber & Stamped)[kCame] = ++this.attached
    ;(s.groups ??= new Set()).add(group)
    let g = this.groupMembers.get(group)
    if (g === undefined) { g = { members: new Set(), index: new PatternIndex() }; this.groupMembers.set(group, g) }
    g.members.add(s)
    for (const segs of s.patterns.values()) g.index.add(segs, s)
    const channel = this.ch.group(group)
    this.groupOfChannel.set(channel, group)
    await this.ref(channel)
  }

  /** No longer a member: nothing more of the group reaches it. */
  leaveGroup (s: Subscriber, group: string): void {
    if (s.groups?.delete(group) !== true) return
    if (s.groups.size === 0) s.groups = null
    const g = this.groupMembers.get(group)
    if (g !== undefined && g.members.delete(s)) {
      for (const segs of s.patterns.values()) g.index.remove(segs, s)
      if (g.members.size === 0) this.groupMembers.delete(group)
    }
    const channel = this.ch.group(group)
    if (this.unref(channel)) this.groupOfChannel.delete(channel)
  }

  /** groups with members on this node, and how many connections each */
  groupCounts (): Map<string, number> {
    const out = new Map<string, number>()
    for (const [name, g] of this.groupMembers) out.set(name, g.members.size)
    return out
  }

  addPattern (s: Subscriber, pattern: string, segs: readonly string[]): void {
    if (s.patterns.has(pattern)) return
    // Counts as coming anew (localOrigin): a local delivery this pattern missed reaches it as its echo.
    ;(s as Subscriber & Stamped)[kCame] = ++this.attached
    s.patterns.set(pattern, segs)
    this.indexOf(s).add(segs, s)
    if (s.groups !== null) for (const g of s.groups) this.groupMembers.get(g)?.index.add(segs, s)
  }

  removePattern (s: Subscriber, pattern: string): void {
    const segs = s.patterns.get(pattern)
    if (!segs) return
    s.patterns.delete(pattern)
    this.indexOf(s).remove(segs, s)
    if (s.groups !== null) for (const g of s.groups) this.groupMembers.get(g)?.index.remove(segs, s)
  }

  /**
   * The origin of a message this node delivers itself (Redis is not
   * delivering): its id and how many subscribers had come by then. Its echo,
   * once Redis takes the message, goes to those that came after (a client
   * that connected, or reconnected, during the outage: its welcome's
   * positions do not hold the message, which is not yet in its stream). A
   * subscriber that adds a pattern or joins a group comes anew: what it
   * could not have had reaches it, and it may get again what it had (at
   * least once, as after any outage; ids tell).
   */
  localOrigin (): string { return `${this.serverId}@${this.attached}` }

  /** The subscribers' count in `origin` when it is this node's localOrigin(), else -1. */
  private localMark (origin: string): number {
    const n = this.serverId.length
    if (origin.length <= n + 1 || origin.charCodeAt(n) !== 64 || !origin.startsWith(this.serverId)) return -1
    const mark = Number(origin.slice(n + 1))
    return Number.isSafeInteger(mark) && mark >= 0 ? mark : -1
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
      this.gaps.take(channel, env)
    } catch (err) {
      this.drop('error', channel, err)
    }
  }

  /** A message heard (or read back), in its stream's order: on to delivery unless this node delivered it already. */
  private accept (channel: string, env: Envelope): void {
    try {
      // Our own messages were delivered locally when published (an origin
      // without a mark: a build before localOrigin()); those with a mark go
      // on to the subscribers that came since (dispatch).
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
    if (diag.messageDropped.hasSubscribers) diag.messageDropped.publish({ serverId: this.serverId, reason, channel, ...(err !== undefined ? { error: err } : {}), log: this.log })
  }

  /** `echo`: heard from the broker (or read back), where this node's own local deliveries come back. */
  private dispatch (channel: string, env: Envelope, echo = false): void {
    if (env.kind === 'c') return this.controlListener(env)
    // This node's own, delivered here already to those that had come: the
    // echo is for those that came after, and no one else.
    const after = echo && env.origin.length > 0 ? this.localMark(env.origin) : -1
    const d = deliveryOf(env)
    let count = 0
    let tapped: readonly string[] | null = null
    let unusableCounted = false
    const seq = ++this.dispatchSeq
    // One recipient's failure stays its own: the others still get the message.
    const deliver = (s: Subscriber): void => {
      if ((s as Subscriber & Stamped)[kStamp] === seq) return
      if (after >= 0 && (s as Subscriber & Stamped)[kCame] <= after) return
      ;(s as Subscriber & Stamped)[kStamp] = seq
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

    const kind = d.kind
    if (env.kind === 'n') {
      // Notifications need no subscription and go to /ws/events connections only.
      if (channel === this.ch.broadcast) {
        this.recipients.forEachOnEvents(deliver)
      } else if (channel.startsWith(this.ch.userPrefix)) {
        if (!this.isUserChannelOf(channel, env.userId)) return
        this.recipients.forEachOfUser(env.userId, deliver)
      }
    } else {
      const type = this.segmentsOf(env.type)
      if (channel === this.ch.broadcast) {
        this.userIndex.forEachMatch(type, deliver)
        this.adminIndex.forEachMatch(type, deliver)
        tapped = type
      } else if (channel === this.ch.admin) {
        this.adminIndex.forEachMatch(type, deliver)
        tapped = type
      } else if (channel.startsWith(this.ch.userPrefix)) {
        if (!this.isUserChannelOf(channel, env.userId)) return
        this.recipients.forEachOfUser(env.userId, (s) => {
          for (const p of s.patterns.values()) {
            if (matches(p, type)) { deliver(s); break }
          }
        })
      } else {
        // A group's channel: its members on this node, those subscribed to the type.
        const group = this.groupOfChannel.get(channel)
        if (group !== undefined) this.groupMembers.get(group)?.index.forEachMatch(type, deliver)
      }
    }

    this.delivered += count
    if (diag.eventDelivered.hasSubscribers) {
      diag.eventDelivered.publish({ serverId: this.serverId, kind: env.kind === 'e' ? 'event' : 'notification', type: env.type, recipients: count, latencyMs: Date.now() - env.publishedAt })
    }
    // This node's own echo: the admins' tail had it at the local delivery.
    if (tapped !== null && this.tap !== null && after < 0) this.tap(env, tapped)
  }

  /** The header's userId, not the channel suffix alone, picks recipients: both must agree. */
  private isHubChannel (channel: string): boolean {
    return channel === this.ch.broadcast || channel === this.ch.admin || channel === this.ch.control || channel.startsWith(this.ch.userPrefix) || this.groupOfChannel.has(channel)
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

  /** the channel a subscriber's events come on besides the broadcast: its user's, the admins', none for a guest */
  private channelOf (s: Subscriber): string | null {
    if (s.kind === 'admin') return this.ch.admin
    return s.guest ? null : this.ch.user(s.userId)
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
    ready.then(() => { entry.ready = SUBSCRIBED }, () => {
      if (this.refs.get(channel) !== entry) return
      this.refs.delete(channel)
      this.gaps.forget(channel)
    })
    return ready
  }

  /** true when that was the last hold on the channel */
  private unref (channel: string): boolean {
    const r = this.refs.get(channel)
    if (!r || --r.refs > 0) return false
    this.refs.delete(channel)
    this.gaps.forget(channel)
    // Redis processes UNSUBSCRIBE and a later SUBSCRIBE in order on one connection.
    this.broker.unsubscribe(channel).catch(() => {})
    return true
  }
}

/** A message as its recipients get it; each form built at most once, whatever their number. */
export function deliveryOf (env: Envelope): Delivery {
  let frame: Buffer | null = null
  let wsFrame: Buffer | null = null
  let payload: unknown
  let unusable = false
  const kind = env.kind === 'e' ? 'event' : 'notification'
  const d: Delivery = {
    kind,
    stream: env.stream,
    offset: env.offset,
    epoch: env.epoch,
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
  return d
}

/**
 * Would the hub deliver `env`, read back from the stream named `stream`, to
 * `s` live? The rules of dispatch() above, for one subscriber: a resume
 * replays exactly what the connection would have received.
 */
export function receives (s: Subscriber, stream: string, env: Envelope): boolean {
  // A group's stream is its members' (whoever published into it); a user's is that user's.
  const group = stream.startsWith('group:') ? stream.slice(6) : null
  const user = group === null && stream !== 'broadcast' && stream !== 'admin'
  if (env.kind === 'n') {
    if (s.kind !== 'events' || group !== null) return false
    return user ? !s.guest && env.userId === s.userId && stream === env.stream : stream === 'broadcast'
  }
  if (env.kind !== 'e') return false
  if (group !== null && (s.kind !== 'events' || s.groups?.has(group) !== true)) return false
  if (user && (s.kind !== 'events' || s.guest || env.userId !== s.userId)) return false
  if (stream === 'admin' && s.kind !== 'admin') return false
  const type = env.type.split('.')
  for (const p of s.patterns.values()) if (matches(p, type)) return true
  return false
}
