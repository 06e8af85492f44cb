// Backend publisher for Node services: typed helpers for Herald's event
// catalogue, publishing either over the HTTP API of any node, or, where the
// service can reach the cluster's Redis, straight onto its channels (same
// validation, same message format, no Herald node in the path).

import { createChannels } from '../cluster/channels.js'
import { HeraldError } from '../errors.js'
import { EVENT_CATALOGUE, type CatalogueType } from '../events/catalogue.js'
import { checkDataDepth } from '../events/depth.js'
import { createIdGenerator } from '../events/ids.js'
import type { NotificationLevel } from '../events/model.js'
import { Publisher } from '../events/publisher.js'
import { validateEvent, validateNotification } from '../events/validate.js'

export { EVENT_CATALOGUE }
export type { CatalogueType, NotificationLevel }

export type PublisherOptions =
  /** over a node's HTTP API, with an API key or a service JWT */
  | { url: string, apiKey: string, fetch?: typeof fetch, timeoutMs?: number }
  /**
   * straight onto Redis: an ioredis client (standalone or Cluster) and the
   * cluster's key prefix. `sharded` (SPUBLISH) defaults to true on an ioredis
   * Cluster, where nodes listen with SSUBSCRIBE; set it only to override.
   */
  | { redis: RedisLike, keyPrefix?: string, sharded?: boolean }

export interface RedisLike {
  publish (channel: string, message: string): Promise<unknown>
  spublish?: (channel: string, message: string) => Promise<unknown>
  /** ioredis: true on a Cluster */
  readonly isCluster?: boolean
}

type Data = Record<string, unknown>
export type EventType = CatalogueType | (string & {})

export class PublishError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message); this.name = 'PublishError' }
}

interface Transport {
  event (body: { type: string, userId?: string, sessionId?: string, data?: Data }): Promise<string>
  notify (userId: string | null, body: { level: NotificationLevel, title: string, message: string, data?: Data }): Promise<string>
}

/** Input refused before it leaves is a PublishError (400 and the code), as the API would answer. */
function valid<T> (check: () => T): T {
  try { return check() } catch (err) {
    if (err instanceof HeraldError) throw new PublishError(err.statusCode, err.code, err.message)
    throw err
  }
}

/** `body` once its data is known to serialise: JSON.stringify overflows the stack on deep nesting. */
const serialisable = <B extends { data?: Data }>(body: B): B => valid(() => { checkDataDepth(body.data); return body })

function httpTransport (o: { url: string, apiKey: string, fetch?: typeof fetch, timeoutMs?: number }): Transport {
  const f = o.fetch ?? fetch
  const base = o.url.replace(/\/+$/, '')
  const post = async (path: string, body: unknown): Promise<string> => {
    const res = await f(base + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    })
    const json = await res.json().catch(() => ({})) as { id?: string, error?: { code: string, message: string } }
    if (res.status !== 202 || json.id === undefined) throw new PublishError(res.status, json.error?.code ?? 'HTTP_ERROR', json.error?.message ?? `HTTP ${res.status}`)
    return json.id
  }
  return {
    event: async (b) => await post('/api/events', serialisable(b)),
    notify: async (userId, b) => await post(userId === null ? '/api/notifications/broadcast' : `/api/notifications/users/${encodeURIComponent(userId)}`, serialisable(b)),
  }
}

function redisTransport (o: { redis: RedisLike, keyPrefix?: string, sharded?: boolean }): Transport {
  // Nodes on a Redis Cluster listen with SSUBSCRIBE, which a plain PUBLISH
  // never reaches: the publish would succeed, return an id and reach no one.
  const sharded = o.sharded ?? o.redis.isCluster === true
  if (sharded && typeof o.redis.spublish !== 'function') throw new Error('sharded publishing needs a Redis client with spublish (ioredis 5 or later)')
  const one = sharded
    ? async (c: string, m: string) => await o.redis.spublish!(c, m)
    : async (c: string, m: string) => await o.redis.publish(c, m)
  const send = async (channels: readonly string[], m: string): Promise<void> => { await Promise.all(channels.map(async (c) => await one(c, m))) }
  // No hub: this publisher is not a node and delivers nothing itself; every node delivers what Redis brings.
  const p = new Publisher({ publish: send }, null, createChannels(o.keyPrefix ?? 'herald:'), 'publisher', createIdGenerator())
  return {
    event: async (b) => (await p.publishEvent(valid(() => validateEvent(b)))).id,
    notify: async (userId, b) => (await p.publishNotification(valid(() => validateNotification(b, userId)), userId)).id,
  }
}

/** Publishes Herald events and notifications from a backend service. */
export class HeraldPublisher {
  private readonly t: Transport

  constructor (options: PublisherOptions) {
    this.t = 'redis' in options ? redisTransport(options) : httpTransport(options)
  }

  /** Any event type; resolves with the event id. */
  async publish (type: EventType, opts: { userId?: string, sessionId?: string, data?: Data } = {}): Promise<string> {
    return await this.t.event({ type, ...opts })
  }

  async publishAuthenticationEvent (type: CatalogueType<'authentication'>, userId: string, sessionId?: string, data?: Data): Promise<string> {
    return await this.publish(type, { userId, ...(sessionId !== undefined ? { sessionId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  async publishSecurityEvent (type: CatalogueType<'security'>, userId?: string, sessionId?: string, data?: Data): Promise<string> {
    return await this.publish(type, { ...(userId !== undefined ? { userId } : {}), ...(sessionId !== undefined ? { sessionId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  async publishSessionEvent (type: CatalogueType<'session'>, userId: string, sessionId: string, data?: Data): Promise<string> {
    return await this.publish(type, { userId, sessionId, ...(data !== undefined ? { data } : {}) })
  }

  /** admin.* events reach admins only. */
  async publishAdminEvent (type: CatalogueType<'admin'>, data?: Data, userId?: string): Promise<string> {
    return await this.publish(type, { ...(userId !== undefined ? { userId } : {}), ...(data !== undefined ? { data } : {}) })
  }

  /** system.* events reach every subscribed user and admin. */
  async publishSystemEvent (type: CatalogueType<'system'>, data?: Data): Promise<string> {
    return await this.publish(type, data !== undefined ? { data } : {})
  }

  async sendUserNotification (userId: string, level: NotificationLevel, title: string, message: string, data?: Data): Promise<string> {
    return await this.t.notify(userId, { level, title, message, ...(data !== undefined ? { data } : {}) })
  }

  async sendBroadcastNotification (level: NotificationLevel, title: string, message: string, data?: Data): Promise<string> {
    return await this.t.notify(null, { level, title, message, ...(data !== undefined ? { data } : {}) })
  }
}
