import type { PublishCapabilities } from '../backend/backend.js'
import { inTime } from '../backend/deadline.js'
import type { Append } from '../backend/streams.js'
import type { Fanout } from '../backend/webhooks.js'
import type { Channels } from '../cluster/channels.js'
import { HeraldError } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import type { Source } from '../protocol/schema.js'
import { ADMIN_STREAM, BROADCAST_STREAM, groupStream, streamName, userStream, type Stream } from '../protocol/streams.js'
import { routesFor, type Route } from './audience.js'
import { draft, draftOf, encode, place, type Envelope, type Position } from './codec.js'
import type { EventInput, HeraldEvent, HeraldNotification, NotificationInput } from './model.js'
import { validateEvent, validateNotification } from './validate.js'
import { EndpointDirectory, NOTIFICATION_TYPE } from '../webhooks/directory.js'

// How long a publish waits for a first read of the webhook endpoints
// (Redis unreachable since this process started): then it fails rather than
// go out without the jobs it may owe them.
const DIRECTORY_WAIT_MS = 500

/** Where a published message went: its stream, and its position once the backend gave it one. */
export interface Placement {
  /** absent when history is off */
  stream?: string
  /** absent when history is off, or the message is held for Redis (an outage) */
  offset?: number
  epoch?: string
}

/** What a publish answers (the API's 202, admin `broadcasted`): the id, and where it went when history is on. */
export const receipt = (m: { id: string } & Placement): { id: string } & Placement => ({
  id: m.id,
  ...(m.stream !== undefined ? { stream: m.stream } : {}),
  ...(m.offset !== undefined ? { offset: m.offset, epoch: m.epoch! } : {}),
})

let lastMs = NaN
let lastIso = ''
/** new Date(ms).toISOString(), remembered for the millisecond: the events of a batch mostly share one. */
function isoTime (ms: number): string {
  if (ms !== lastMs) { lastMs = ms; lastIso = new Date(ms).toISOString() }
  return lastIso
}

/** JSON.stringify(receipt(m)), written directly: a batch answers hundreds. */
export const receiptJson = (m: { id: string } & Placement): string =>
  `{"id":${JSON.stringify(m.id)}${m.stream !== undefined ? `,"stream":${JSON.stringify(m.stream)}` : ''}${m.offset !== undefined ? `,"offset":${m.offset},"epoch":${JSON.stringify(m.epoch)}` : ''}}`

/**
 * The one place that turns what an entry point was given into a message on
 * the cluster: validation, id, timestamp, audience (channels), its stream,
 * encoding. Every entry point calls it (the HTTP API, operator actions and
 * their audit events, the publisher library's direct-to-Redis mode), so what
 * a publish does happens whichever way it came in.
 *
 * With history on, every event and notification is appended to its one
 * stream (src/protocol/streams.ts), which gives it its position, in the same
 * step as it goes out on the stream's channel; a user's event also goes out
 * live, with the same position, on the admin channel (admins see every
 * user's events; they do not resume them).
 *
 * While Redis works, every node (this one too) delivers what comes back from
 * Redis: one order for everyone, so a service that publishes one event
 * through node A and the next through node B has them arrive in that order
 * everywhere. While it does not (the readiness probe fails), this node
 * delivers to its own connections at once, without a position (none exists
 * yet), and marks the message as its own, so the echo after recovery is not
 * delivered twice.
 *
 * Each event (notifications as the type `notification`) is matched against
 * the webhook endpoints: the jobs of those it matches are enqueued with it,
 * once it has its position, before the publish resolves (the broker holds
 * them through an outage with the message).
 */
/** A client's publish: who (stamped as the event's source) and the bound on its data. */
export interface ClientOrigin { readonly source: Source, readonly maxDataBytes: number }

export class Publisher {
  published = 0
  /** the webhook endpoints this process knows, refreshed within a second of a change */
  readonly webhooks: EndpointDirectory

  /**
   * `backend` carries messages to the cluster; `hub`, when the publisher lives
   * in a node, delivers to that node's own connections first. The publisher
   * library (src/client/publisher.ts) has no hub: it is nobody's node.
   */
  constructor (
    private readonly backend: PublishCapabilities,
    private readonly hub: { dispatchLocal (channel: string, raw: string): void, localOrigin (): string } | null,
    private readonly ch: Channels,
    private readonly serverId: string,
    private readonly nextId: () => string,
    /** true while Redis is not delivering: deliver to this node's connections directly */
    private readonly localFirst: () => boolean = () => false,
    onError: (err: Error) => void = () => {},
  ) {
    this.webhooks = new EndpointDirectory(backend.webhooks, onError)
  }

  /** Stops refreshing the endpoints. */
  close (): void { this.webhooks.stop() }

  /** The endpoints a message of `type` goes to; undefined when none. */
  private async fanout (eventId: string, type: string, at: number): Promise<Fanout | undefined> {
    await this.knowEndpoints()
    return this.matched(eventId, type, at)
  }

  /** fanout() once the endpoints are known. */
  private matched (eventId: string, type: string, at: number): Fanout | undefined {
    const endpoints = this.webhooks.match(type)
    return endpoints.length === 0 ? undefined : { eventId, type, at, endpoints }
  }

  private async knowEndpoints (): Promise<void> {
    // Known once, refreshed in the background after: the wait (a timer and a
    // race per publish) is for a process that never read the list yet.
    if (this.webhooks.known) return
    try {
      await inTime(this.webhooks.ready(), DIRECTORY_WAIT_MS, () => new Error(`the webhook endpoints could not be read within ${DIRECTORY_WAIT_MS} ms`))
    } catch (err) {
      throw new HeraldError('BACKEND_UNAVAILABLE', (err as Error).message)
    }
  }

  /**
   * The event as clients receive it, with its stream and position when history gave it one.
   * `client`: a client published it (src/publish/): who, stamped from its
   * connection, and the bound on its data (its frame's, MAX_PUBLISH_BYTES).
   */
  async publishEvent (given: EventInput, client?: ClientOrigin): Promise<HeraldEvent> {
    const { event, now, dataJson } = this.eventOf(given, client)
    const placed = await this.send(this.compose(event, now, dataJson, await this.fanout(event.id, event.type, now)))
    return this.published1(event, placed)
  }

  /**
   * Each event as publishEvent() publishes it, in this order, answered on
   * its own: the event, or why it was refused or not published (a refused
   * event holds back none of the others). One path for them all: one
   * append each, handed to the broker together (appendMany), which sends
   * them to Redis in one turn (src/backend/streams-redis.ts), so events of
   * one stream take their offsets in this order; and no timer, promise
   * chain or wait per event, which at hundreds of events a request cost
   * more than the events themselves.
   */
  async publishEvents (given: readonly EventInput[]): Promise<Array<HeraldEvent | HeraldError>> {
    const out: Array<HeraldEvent | HeraldError> = new Array(given.length)
    const valid: Array<{ i: number, event: HeraldEvent, now: number, dataJson: string }> = []
    given.forEach((g, i) => {
      try {
        valid.push({ i, ...this.eventOf(g) })
      } catch (err) {
        out[i] = err instanceof HeraldError ? err : new HeraldError('INTERNAL', (err as Error).message)
      }
    })
    if (valid.length === 0) return out
    let outgoing: Outgoing[]
    try {
      await this.knowEndpoints()
      outgoing = valid.map((v) => this.compose(v.event, v.now, v.dataJson, this.matched(v.event.id, v.event.type, v.now)))
    } catch (err) {
      const e = err instanceof HeraldError ? err : new HeraldError('INTERNAL', (err as Error).message)
      for (const v of valid) out[v.i] = e
      return out
    }
    const placed = await this.sendMany(outgoing)
    valid.forEach((v, k) => {
      const p = placed[k]!
      out[v.i] = p instanceof HeraldError ? p : this.published1(v.event, p)
    })
    return out
  }

  /**
   * What an entry point was given, checked (whatever an entry point checked
   * before: the library's direct mode has no schema in front of it), before
   * anything serialises the data (JSON.stringify overflows the stack on
   * deep nesting); with its id and timestamp.
   */
  private eventOf (given: EventInput, client?: ClientOrigin): { event: HeraldEvent, now: number, dataJson: string } {
    const { input, dataJson } = validateEvent(given, client?.maxDataBytes)
    const now = Date.now()
    const event: HeraldEvent = { id: this.nextId(), type: input.type, timestamp: isoTime(now), data: input.data ?? {} }
    if (input.userId !== undefined) event.userId = input.userId
    if (input.sessionId !== undefined) event.sessionId = input.sessionId
    if (input.group !== undefined) event.group = input.group
    if (client !== undefined) event.source = { userId: client.source.userId, sessionId: client.source.sessionId, connectionId: client.source.connectionId }
    return { event, now, dataJson }
  }

  /** `dataJson`: the event's data as validateEvent() serialised it, which the message carries as is. */
  private compose (event: HeraldEvent, now: number, dataJson: string, webhooks: Fanout | undefined): Outgoing {
    const target = event.group !== undefined ? { group: event.group } : { userId: event.userId }
    return this.outgoing(routesFor(event.type, event.userId, event.group), target, event, { kind: 'e', publishedAt: now, type: event.type, userId: event.userId ?? '' }, webhooks, openEventJson(event, dataJson))
  }

  private published1 (event: HeraldEvent, placed: Placement): HeraldEvent {
    if (diag.eventPublished.hasSubscribers) diag.eventPublished.publish({ serverId: this.serverId, kind: 'event', type: event.type, id: event.id })
    return Object.assign(event, placed)
  }

  /** userId null: every /ws/events connection in the cluster. */
  async publishNotification (given: NotificationInput, userId: string | null): Promise<HeraldNotification> {
    const input = validateNotification(given, userId)
    const now = Date.now()
    const n: HeraldNotification = { id: this.nextId(), level: input.level, title: input.title, message: input.message, timestamp: new Date(now).toISOString() }
    if (input.data !== undefined) n.data = input.data
    const placed = await this.send(this.outgoing(userId === null ? ['broadcast'] : ['user'], { userId: userId ?? undefined }, n, { kind: 'n', publishedAt: now, type: 'notification', userId: userId ?? '' }, await this.fanout(n.id, NOTIFICATION_TYPE, now)))
    if (diag.eventPublished.hasSubscribers) diag.eventPublished.publish({ serverId: this.serverId, kind: 'notification', type: 'notification', id: n.id })
    return Object.assign(n, placed)
  }

  /**
   * A node-to-node instruction: on a user's channel it reaches only the nodes
   * holding that user's connections; on the control channel, every node.
   * Control messages belong to no stream.
   */
  async publishControl (action: string, arg: unknown, userId: string | null): Promise<void> {
    const channel = userId === null ? this.ch.control : this.ch.user(userId)
    const raw = encode({ kind: 'c', origin: this.serverId, publishedAt: Date.now(), type: action, userId: userId ?? '', stream: '', offset: null, epoch: '', json: JSON.stringify(arg) })
    this.hub?.dispatchLocal(channel, raw)
    await this.backend.broker.publish([channel], raw)
  }

  /**
   * A message for the routes' channels, delivered on this node first while
   * Redis is not delivering. The first route's stream is the message's own
   * (audience.ts gives a user's route before the admin copy); the others get
   * it live only. `open`: JSON.stringify(payload) without its closing
   * brace, when the caller wrote it already (events: openEventJson).
   */
  private outgoing (routes: readonly Route[], target: { userId?: string | undefined, group?: string }, payload: object, head: Pick<Envelope, 'kind' | 'publishedAt' | 'type' | 'userId'>, webhooks: Fanout | undefined, open?: string): Outgoing {
    this.published++
    const streams = routes.map((r): Stream => r === 'user' ? userStream(target.userId!) : r === 'group' ? groupStream(target.group!) : r === 'broadcast' ? BROADCAST_STREAM : ADMIN_STREAM)
    const names = streams.map((s) => this.ch.of(s))
    const local = this.hub !== null && this.localFirst()
    // The origin names a node only when that node delivered it itself; an
    // empty origin means every node, the publisher's included, delivers the echo.
    const origin = local ? this.hub!.localOrigin() : ''
    if (this.backend.broker.history === null) {
      const json = open !== undefined ? `${open}}` : JSON.stringify(payload)
      const raw = encode({ ...head, origin, stream: '', offset: null, epoch: '', json })
      if (local) for (const c of names) this.hub!.dispatchLocal(c, raw)
      return { local, names, raw, json, webhooks }
    }
    const stream = streamName(streams[0]!)
    const d = open !== undefined
      ? draftOf({ ...head, origin, stream }, `${open},"stream":${JSON.stringify(stream)}`)
      : draft({ ...head, origin, stream, json: JSON.stringify({ ...payload, stream }) })
    if (local) {
      const raw = place(d, null)
      for (const c of names) this.hub!.dispatchLocal(c, raw)
    }
    return { local, names, stream, append: { channel: names[0]!, also: names.slice(1), draft: d, ...(webhooks !== undefined ? { webhooks } : {}) } }
  }

  private async send (o: Outgoing): Promise<Placement> {
    const broker = this.backend.broker
    try {
      if (o.append === undefined) {
        await broker.publish(o.names, o.raw!, o.webhooks === undefined ? undefined : { fanout: o.webhooks, body: o.json! })
        return {}
      }
      return placement(o.stream!, await broker.append(o.append))
    } catch (err) {
      throw unavailable(o, err)
    }
  }

  /** send() of each, in order; the appends handed to the broker together. */
  private async sendMany (list: readonly Outgoing[]): Promise<Array<Placement | HeraldError>> {
    if (this.backend.broker.history === null) {
      return await Promise.all(list.map(async (o) => await this.send(o).catch((err: HeraldError) => err)))
    }
    let positions: Array<Position | null | Error>
    try {
      positions = await this.backend.broker.appendMany(list.map((o) => o.append!))
    } catch (err) {
      return list.map((o) => unavailable(o, err))
    }
    return list.map((o, k) => {
      const p = positions[k]!
      return p instanceof Error ? unavailable(o, p) : placement(o.stream!, p)
    })
  }
}

/** A message composed for the broker: an append (history on) or a plain publish of `raw`. */
interface Outgoing {
  /** delivered on this node already (Redis is not delivering) */
  readonly local: boolean
  readonly names: readonly string[]
  readonly stream?: string
  readonly append?: Append
  readonly raw?: string
  readonly json?: string
  readonly webhooks?: Fanout | undefined
}

/**
 * JSON.stringify(event) without its closing brace, its data given as JSON
 * (serialised once, when it was measured): the same keys in the same order
 * as eventOf() sets them, so the same text.
 */
export function openEventJson (e: HeraldEvent, dataJson: string): string {
  let s = `{"id":${JSON.stringify(e.id)},"type":${JSON.stringify(e.type)},"timestamp":${JSON.stringify(e.timestamp)},"data":${dataJson}`
  if (e.userId !== undefined) s += `,"userId":${JSON.stringify(e.userId)}`
  if (e.sessionId !== undefined) s += `,"sessionId":${JSON.stringify(e.sessionId)}`
  if (e.group !== undefined) s += `,"group":${JSON.stringify(e.group)}`
  if (e.source !== undefined) s += `,"source":${JSON.stringify(e.source)}`
  return s
}

const placement = (stream: string, position: Position | null): Placement =>
  position === null ? { stream } : { stream, offset: position.offset, epoch: position.epoch }

const unavailable = (o: Outgoing, err: unknown): HeraldError =>
  new HeraldError('BACKEND_UNAVAILABLE', o.local ? `delivered on this node only: ${(err as Error).message}` : (err as Error).message)

