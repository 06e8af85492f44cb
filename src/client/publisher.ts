// Backend publisher for Node services: typed helpers for Herald's event
// catalogue, publishing either over the HTTP API of any node, or, where the
// service can reach the cluster's Redis, straight onto its channels through
// the node's own publish path (src/events/publisher.ts: same validation, same
// message format, same side effects), with no Herald node in between.

import type { PublishingClient } from '../backend/broker-redis.js'
import { backendOverClient } from '../backend/over-client.js'
import { DEFAULT_HISTORY, type HistoryConfig } from '../backend/streams.js'
import { createChannels } from '../cluster/channels.js'
import { Errors, HeraldError } from '../errors.js'
import { EVENT_CATALOGUE, type CatalogueType } from '../events/catalogue.js'
import { checkDataDepth } from '../events/depth.js'
import { createIdGenerator } from '../events/ids.js'
import type { NotificationLevel } from '../events/model.js'
import { Publisher, receipt } from '../events/publisher.js'

export { EVENT_CATALOGUE }
export type { CatalogueType, NotificationLevel }

export type PublisherOptions =
  /** over a node's HTTP API, with an API key or a service JWT */
  | { url: string, apiKey: string, fetch?: typeof fetch, timeoutMs?: number }
  /**
   * straight onto Redis: an ioredis client (standalone or Cluster) and the
   * cluster's key prefix. `sharded` (SPUBLISH) defaults to true on an ioredis
   * Cluster, where nodes listen with SSUBSCRIBE; set it only to override.
   * `history`: the nodes' HISTORY_SIZE and HISTORY_TTL (ms), which each
   * publish is appended under, as a node appends it; their defaults unless
   * given; `false` when the nodes run with history off. `webhooks: false`
   * when the cluster has no webhook endpoints: otherwise each publish is
   * matched against them (read with the same client, refreshed within a
   * second of a change) and enqueues their jobs, as a node's publish does.
   */
  | { redis: RedisLike, keyPrefix?: string, sharded?: boolean, history?: { size: number, ttlMs: number } | false, webhooks?: boolean }

/** What a publish answers: the id, and with history on its stream and position (as the API's 202). */
export interface Receipt {
  id: string
  /** absent when history is off */
  stream?: string
  /** absent when history is off, or when a node held the publish through a Redis outage (it gets its position then) */
  offset?: number
  epoch?: string
}

/** An ioredis client (Redis or Cluster), or anything that publishes like one. */
export type RedisLike = PublishingClient

type Data = Record<string, unknown>
export type EventType = CatalogueType | (string & {})

export class PublishError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message); this.name = 'PublishError' }
}

/** One event of publishMany(): what publish() takes, its type included. */
export interface EventToPublish { type: EventType, userId?: string, sessionId?: string, data?: Data }

/** Events per request of publishMany() over HTTP: the API's batch limit (MAX_BATCH_EVENTS). */
export const BATCH_EVENTS = 500

interface Transport {
  event (body: { type: string, userId?: string, sessionId?: string, data?: Data }): Promise<Receipt>
  /** each event's receipt or refusal, in order; rejects only when the request as a whole failed */
  events (bodies: ReadonlyArray<{ type: string, userId?: string, sessionId?: string, data?: Data }>): Promise<Array<Receipt | PublishError>>
  notify (userId: string | null, body: { level: NotificationLevel, title: string, message: string, data?: Data }): Promise<Receipt>
  close (): void
}

/** Input refused before it leaves is a PublishError (400 and the code), as the API would answer. */
function refusedAsPublishError (err: unknown): never {
  if (err instanceof HeraldError && err.statusCode < 500) throw new PublishError(err.statusCode, err.code, err.message)
  throw err
}

/** The status the API gives a code (an event's own failure in a batch carries none). */
const statusOf = (code: string | undefined): number => code !== undefined && Object.hasOwn(Errors, code) ? Errors[code as keyof typeof Errors].status : 400

/** One event's failure in a batch, as the API answers it in the event's place. */
const asPublishError = (err: HeraldError): PublishError => new PublishError(err.statusCode, err.code, err.message)

function valid<T> (check: () => T): T {
  try { return check() } catch (err) { refusedAsPublishError(err) }
}

/** `body` once its data is known to serialise: JSON.stringify overflows the stack on deep nesting. */
const serialisable = <B extends { data?: Data }>(body: B): B => valid(() => { checkDataDepth(body.data); return body })

function httpTransport (o: { url: string, apiKey: string, fetch?: typeof fetch, timeoutMs?: number }): Transport {
  const f = o.fetch ?? fetch
  const base = o.url.replace(/\/+$/, '')
  const send = async (path: string, body: unknown): Promise<{ status: number, json: any }> => {
    const res = await f(base + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    })
    return { status: res.status, json: await res.json().catch(() => ({})) }
  }
  const refused = (status: number, json: { error?: { code: string, message: string } }): PublishError =>
    new PublishError(status, json.error?.code ?? 'HTTP_ERROR', json.error?.message ?? `HTTP ${status}`)
  const post = async (path: string, body: unknown): Promise<Receipt> => {
    const { status, json } = await send(path, body)
    if (status !== 202 || json.id === undefined) throw refused(status, json)
    return receipt({ ...json, id: json.id })
  }
  const batch = async (bodies: ReadonlyArray<{ type: string, userId?: string, sessionId?: string, data?: Data }>): Promise<Array<Receipt | PublishError>> => {
    const out: Array<Receipt | PublishError> = new Array(bodies.length)
    // Refused here what cannot be serialised; the rest go in order, BATCH_EVENTS a request.
    const sendable: number[] = []
    bodies.forEach((b, i) => {
      try { serialisable(b); sendable.push(i) } catch (err) { out[i] = err as PublishError }
    })
    for (let k = 0; k < sendable.length; k += BATCH_EVENTS) {
      const idx = sendable.slice(k, k + BATCH_EVENTS)
      const { status, json } = await send('/api/events/batch', { events: idx.map((i) => bodies[i]) })
      const results = json.results as Array<Partial<Receipt> & { error?: { code: string, message: string } }> | undefined
      if (status !== 200 || !Array.isArray(results) || results.length !== idx.length) throw refused(status, json)
      idx.forEach((i, j) => {
        const r = results[j]!
        out[i] = r.error !== undefined || r.id === undefined ? refused(statusOf(r.error?.code), r) : receipt({ ...r, id: r.id })
      })
    }
    return out
  }
  return {
    event: async (b) => await post('/api/events', serialisable(b)),
    events: batch,
    notify: async (userId, b) => await post(userId === null ? '/api/notifications/broadcast' : `/api/notifications/users/${encodeURIComponent(userId)}`, serialisable(b)),
    close: () => {},
  }
}

/** The retention a direct publisher appends under: the nodes' defaults, theirs as given, or none (0 turns it off, as on the nodes). */
function historyOf (h: { size: number, ttlMs: number } | false | undefined): HistoryConfig | null {
  if (h === undefined) return DEFAULT_HISTORY
  if (h === false) return null
  for (const k of ['size', 'ttlMs'] as const) {
    if (!Number.isSafeInteger(h[k]) || h[k] < 0) throw new TypeError(`history.${k} must be a whole number >= 0 (the nodes' ${k === 'size' ? 'HISTORY_SIZE' : 'HISTORY_TTL'})`)
  }
  return h.size === 0 || h.ttlMs === 0 ? null : { size: h.size, ttlMs: h.ttlMs }
}

function redisTransport (o: { redis: RedisLike, keyPrefix?: string, sharded?: boolean, history?: { size: number, ttlMs: number } | false, webhooks?: boolean }): Transport {
  const keyPrefix = o.keyPrefix ?? 'herald:'
  const backend = backendOverClient(o.redis, { ...(o.sharded !== undefined ? { sharded: o.sharded } : {}), history: historyOf(o.history), keyPrefix, webhooks: o.webhooks ?? true })
  // No hub: this publisher is not a node and delivers nothing itself; every node delivers what Redis brings.
  const p = new Publisher(backend, null, createChannels(keyPrefix), 'publisher', createIdGenerator())
  return {
    event: async (b) => receipt(await p.publishEvent(b).catch(refusedAsPublishError)),
    // The node's batch path: one turn, so their appends share the script calls (one round trip).
    events: async (bodies) => (await p.publishEvents(bodies)).map((r) => r instanceof HeraldError ? asPublishError(r) : receipt(r)),
    notify: async (userId, b) => receipt(await p.publishNotification(b, userId).catch(refusedAsPublishError)),
    close: () => { p.close() },
  }
}

/** Publishes Herald events and notifications from a backend service. */
export class HeraldPublisher {
  private readonly t: Transport
  private readonly inFlight = new Set<Promise<unknown>>()
  private closed = false

  constructor (options: PublisherOptions) {
    this.t = 'redis' in options ? redisTransport(options) : httpTransport(options)
  }

  /** Any event type; resolves with the event id. */
  publish (type: EventType, opts: { userId?: string, sessionId?: string, data?: Data } = {}): Promise<string> {
    return this.track(async () => (await this.t.event({ type, ...opts })).id)
  }

  /** As publish(), resolving with the receipt: the id, the stream and the position it got. */
  publishWithReceipt (type: EventType, opts: { userId?: string, sessionId?: string, data?: Data } = {}): Promise<Receipt> {
    return this.track(() => this.t.event({ type, ...opts }))
  }

  /**
   * Many events at once, in order: over HTTP, POST /api/events/batch (500 a
   * request; more are sent in order, a request at a time); straight onto
   * Redis, the node's own batch path, whose appends go to Redis together.
   * Resolves with one result per event, in order: its receipt, or the
   * PublishError that refused it (a refused event does not hold back the
   * others). Rejects when a request as a whole failed (the network, the
   * credential, a cluster that published none of them): events of that
   * request and after it were then not published by it.
   */
  publishMany (events: readonly EventToPublish[]): Promise<Array<Receipt | PublishError>> {
    return this.track(async () => events.length === 0 ? [] : await this.t.events(events))
  }

  /** A notification to one user (userId) or to everyone (null), resolving with the receipt. */
  notifyWithReceipt (userId: string | null, level: NotificationLevel, title: string, message: string, data?: Data): Promise<Receipt> {
    return this.track(() => this.t.notify(userId, { level, title, message, ...(data !== undefined ? { data } : {}) }))
  }

  /**
   * Refuses further publishes and resolves once those already started have
   * settled (each publish's promise settles before this one does). It never
   * closes the Redis client given in `redis`: that client is the caller's,
   * who may use it for other things, and closes it.
   */
  async close (): Promise<void> {
    this.closed = true
    await Promise.allSettled([...this.inFlight])
    this.t.close()
  }

  /** The publish's own promise, handed to the caller as is, so it settles before close() does. */
  private track<T> (send: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('publisher closed'))
    const p = send()
    this.inFlight.add(p)
    const forget = (): void => { this.inFlight.delete(p) }
    p.then(forget, forget)
    return p
  }

  publishAuthenticationEvent (type: CatalogueType<'authentication'>, userId: string, sessionId?: string, data?: Data): Promise<string> {
    return this.publish(type, { userId, ...(sessionId !== undefined ? { sessionId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  publishSecurityEvent (type: CatalogueType<'security'>, userId?: string, sessionId?: string, data?: Data): Promise<string> {
    return this.publish(type, { ...(userId !== undefined ? { userId } : {}), ...(sessionId !== undefined ? { sessionId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  publishSessionEvent (type: CatalogueType<'session'>, userId: string, sessionId: string, data?: Data): Promise<string> {
    return this.publish(type, { userId, sessionId, ...(data !== undefined ? { data } : {}) })
  }

  /** admin.* events reach admins only. */
  publishAdminEvent (type: CatalogueType<'admin'>, data?: Data, userId?: string): Promise<string> {
    return this.publish(type, { ...(userId !== undefined ? { userId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  /** system.* events reach every subscribed user and admin. */
  publishSystemEvent (type: CatalogueType<'system'>, data?: Data): Promise<string> {
    return this.publish(type, data !== undefined ? { data } : {})
  }

  sendUserNotification (userId: string, level: NotificationLevel, title: string, message: string, data?: Data): Promise<string> {
    return this.track(async () => (await this.t.notify(userId, { level, title, message, ...(data !== undefined ? { data } : {}) })).id)
  }

  sendBroadcastNotification (level: NotificationLevel, title: string, message: string, data?: Data): Promise<string> {
    return this.track(async () => (await this.t.notify(null, { level, title, message, ...(data !== undefined ? { data } : {}) })).id)
  }
}
