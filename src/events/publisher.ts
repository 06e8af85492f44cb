import type { PublishCapabilities } from '../backend/backend.js'
import type { Fanout } from '../backend/webhooks.js'
import type { Channels } from '../cluster/channels.js'
import { HeraldError } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import type { Source } from '../protocol/schema.js'
import { ADMIN_STREAM, BROADCAST_STREAM, groupStream, streamName, userStream, type Stream } from '../protocol/streams.js'
import { routesFor, type Route } from './audience.js'
import { draft, encode, place, type Envelope, type Position } from './codec.js'
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
    private readonly hub: { dispatchLocal (channel: string, raw: string): void } | null,
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
    const endpoints = this.webhooks.match(type)
    return endpoints.length === 0 ? undefined : { eventId, type, at, endpoints }
  }

  private async knowEndpoints (): Promise<void> {
    const ready = this.webhooks.ready()
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([ready, new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`the webhook endpoints could not be read within ${DIRECTORY_WAIT_MS} ms`)), DIRECTORY_WAIT_MS)
      })])
    } catch (err) {
      ready.catch(() => {})
      throw new HeraldError('BACKEND_UNAVAILABLE', (err as Error).message)
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The event as clients receive it, with its stream and position when history gave it one.
   * `client`: a client published it (src/publish/): who, stamped from its
   * connection, and the bound on its data (its frame's, MAX_PUBLISH_BYTES).
   */
  async publishEvent (given: EventInput, client?: { source: Source, maxDataBytes: number }): Promise<HeraldEvent> {
    // Here, whatever an entry point checked before (the library's direct mode
    // has no schema in front of it), and before anything serialises the data:
    // JSON.stringify overflows the stack on deep nesting.
    const input = validateEvent(given, client?.maxDataBytes)
    const now = Date.now()
    const event: HeraldEvent = { id: this.nextId(), type: input.type, timestamp: new Date(now).toISOString(), data: input.data ?? {} }
    if (input.userId !== undefined) event.userId = input.userId
    if (input.sessionId !== undefined) event.sessionId = input.sessionId
    if (input.group !== undefined) event.group = input.group
    if (client !== undefined) event.source = { userId: client.source.userId, sessionId: client.source.sessionId, connectionId: client.source.connectionId }
    const target = input.group !== undefined ? { group: input.group } : { userId: input.userId }
    const placed = await this.send(routesFor(event.type, input.userId, input.group), target, event, { kind: 'e', publishedAt: now, type: event.type, userId: input.userId ?? '' }, await this.fanout(event.id, event.type, now))
    if (diag.eventPublished.hasSubscribers) diag.eventPublished.publish({ serverId: this.serverId, kind: 'event', type: event.type, id: event.id })
    return Object.assign(event, placed)
  }

  /** userId null: every /ws/events connection in the cluster. */
  async publishNotification (given: NotificationInput, userId: string | null): Promise<HeraldNotification> {
    const input = validateNotification(given, userId)
    const now = Date.now()
    const n: HeraldNotification = { id: this.nextId(), level: input.level, title: input.title, message: input.message, timestamp: new Date(now).toISOString() }
    if (input.data !== undefined) n.data = input.data
    const placed = await this.send(userId === null ? ['broadcast'] : ['user'], { userId: userId ?? undefined }, n, { kind: 'n', publishedAt: now, type: 'notification', userId: userId ?? '' }, await this.fanout(n.id, NOTIFICATION_TYPE, now))
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
   * Out on the routes' channels. The first route's stream is the message's
   * own (audience.ts gives a user's route before the admin copy); the others
   * get it live only.
   */
  private async send (routes: readonly Route[], target: { userId?: string | undefined, group?: string }, payload: object, head: Pick<Envelope, 'kind' | 'publishedAt' | 'type' | 'userId'>, webhooks: Fanout | undefined): Promise<Placement> {
    this.published++
    const streams = routes.map((r): Stream => r === 'user' ? userStream(target.userId!) : r === 'group' ? groupStream(target.group!) : r === 'broadcast' ? BROADCAST_STREAM : ADMIN_STREAM)
    const names = streams.map((s) => this.ch.of(s))
    const local = this.hub !== null && this.localFirst()
    // The origin names a node only when that node delivered it itself; an
    // empty origin means every node, the publisher's included, delivers the echo.
    const origin = local ? this.serverId : ''
    const broker = this.backend.broker
    try {
      if (broker.history === null) {
        const json = JSON.stringify(payload)
        const raw = encode({ ...head, origin, stream: '', offset: null, epoch: '', json })
        if (local) for (const c of names) this.hub!.dispatchLocal(c, raw)
        await broker.publish(names, raw, webhooks === undefined ? undefined : { fanout: webhooks, body: json })
        return {}
      }
      const stream = streamName(streams[0]!)
      const d = draft({ ...head, origin, stream, json: JSON.stringify({ ...payload, stream }) })
      if (local) {
        const raw = place(d, null)
        for (const c of names) this.hub!.dispatchLocal(c, raw)
      }
      const position: Position | null = await broker.append({ channel: names[0]!, also: names.slice(1), draft: d, ...(webhooks !== undefined ? { webhooks } : {}) })
      return position === null ? { stream } : { stream, offset: position.offset, epoch: position.epoch }
    } catch (err) {
      throw new HeraldError('BACKEND_UNAVAILABLE', local ? `delivered on this node only: ${(err as Error).message}` : (err as Error).message)
    }
  }
}
