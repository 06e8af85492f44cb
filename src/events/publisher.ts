import type { PublishCapabilities } from '../backend/backend.js'
import type { Channels } from '../cluster/channels.js'
import { HeraldError } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import { routesFor, type Route } from './audience.js'
import { encode, type Envelope } from './codec.js'
import type { EventInput, HeraldEvent, HeraldNotification, NotificationInput } from './model.js'
import { validateEvent, validateNotification } from './validate.js'

/**
 * The one place that turns what an entry point was given into a message on
 * the cluster: validation, id, timestamp, audience (channels), encoding.
 * Every entry point calls it (the HTTP API, operator actions and their audit
 * events, the publisher library's direct-to-Redis mode), so what a publish
 * does happens whichever way it came in.
 *
 * While Redis works, every node (this one too) delivers what comes back from
 * Redis: one order for everyone, so a service that publishes one event
 * through node A and the next through node B has them arrive in that order
 * everywhere. While it does not (the readiness probe fails), this node
 * delivers to its own connections at once and marks the message as its own,
 * so the echo after recovery is not delivered twice.
 */
export class Publisher {
  published = 0

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
  ) {}

  async publishEvent (given: EventInput): Promise<HeraldEvent> {
    // Here, whatever an entry point checked before (the library's direct mode
    // has no schema in front of it), and before anything serialises the data:
    // JSON.stringify overflows the stack on deep nesting.
    const input = validateEvent(given)
    const now = Date.now()
    const event: HeraldEvent = { id: this.nextId(), type: input.type, timestamp: new Date(now).toISOString(), data: input.data ?? {} }
    if (input.userId !== undefined) event.userId = input.userId
    if (input.sessionId !== undefined) event.sessionId = input.sessionId
    await this.send(routesFor(event.type, input.userId), input.userId, { kind: 'e', publishedAt: now, type: event.type, userId: input.userId ?? '', json: JSON.stringify(event) })
    if (diag.eventPublished.hasSubscribers) diag.eventPublished.publish({ serverId: this.serverId, kind: 'event', type: event.type, id: event.id })
    return event
  }

  /** userId null: every /ws/events connection in the cluster. */
  async publishNotification (given: NotificationInput, userId: string | null): Promise<HeraldNotification> {
    const input = validateNotification(given, userId)
    const now = Date.now()
    const n: HeraldNotification = { id: this.nextId(), level: input.level, title: input.title, message: input.message, timestamp: new Date(now).toISOString() }
    if (input.data !== undefined) n.data = input.data
    await this.send(userId === null ? ['broadcast'] : ['user'], userId ?? undefined, { kind: 'n', publishedAt: now, type: 'notification', userId: userId ?? '', json: JSON.stringify(n) })
    if (diag.eventPublished.hasSubscribers) diag.eventPublished.publish({ serverId: this.serverId, kind: 'notification', type: 'notification', id: n.id })
    return n
  }

  /**
   * A node-to-node instruction: on a user's channel it reaches only the nodes
   * holding that user's connections; on the control channel, every node.
   */
  async publishControl (action: string, arg: unknown, userId: string | null): Promise<void> {
    const channel = userId === null ? this.ch.control : this.ch.user(userId)
    const raw = encode({ kind: 'c', origin: this.serverId, publishedAt: Date.now(), type: action, userId: userId ?? '', json: JSON.stringify(arg) })
    this.hub?.dispatchLocal(channel, raw)
    await this.backend.broker.publish([channel], raw)
  }

  private async send (routes: readonly Route[], userId: string | undefined, msg: Omit<Envelope, 'origin'>): Promise<void> {
    this.published++
    const names = routes.map((r) => r === 'user' ? this.ch.user(userId!) : r === 'broadcast' ? this.ch.broadcast : this.ch.admin)
    const local = this.hub !== null && this.localFirst()
    // The origin names a node only when that node delivered it itself; an
    // empty origin means every node, the publisher's included, delivers the echo.
    const raw = encode({ ...msg, origin: local ? this.serverId : '' })
    if (local) for (const c of names) this.hub!.dispatchLocal(c, raw)
    try {
      await this.backend.broker.publish(names, raw)
    } catch (err) {
      throw new HeraldError('BACKEND_UNAVAILABLE', local ? `delivered on this node only: ${(err as Error).message}` : (err as Error).message)
    }
  }
}
