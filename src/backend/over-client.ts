import type { PublishCapabilities } from './backend.js'
import { ClientPublish, type PublishingClient } from './broker-redis.js'
import type { RedisClient } from './redis-clients.js'
import type { HistoryConfig } from './streams.js'
import type { WebhookEndpointSource } from './webhooks.js'
import { RedisWebhooks } from './webhooks-redis.js'

// Apart from backend.ts, which composes a node's whole backend (rate limiter,
// Socket.IO adapter, ...): the publisher package is built from what this file
// reaches, and must not carry the node's modules.

/**
 * The publish path's capabilities over a Redis client the caller owns
 * (ioredis, standalone or Cluster): the publisher library's direct mode.
 * `sharded` (SPUBLISH) defaults to true on an ioredis Cluster; `history` is
 * what the nodes keep (null: off). Nothing here ever closes or reconfigures
 * the caller's client; with history, the append script is defined on it
 * (ioredis `defineCommand`, as `heraldAppend`), and so are the webhook
 * scripts unless `webhooks` is false (the cluster has no endpoints).
 */
export function backendOverClient (client: PublishingClient, opts: { sharded?: boolean, history?: HistoryConfig | null, keyPrefix?: string, webhooks?: boolean } = {}): PublishCapabilities {
  const sharded = opts.sharded ?? client.isCluster === true
  const keyPrefix = opts.keyPrefix ?? 'herald:'
  const webhooks = opts.webhooks ?? true
  return {
    broker: new ClientPublish(client, sharded, opts.history ?? null, webhooks ? { keyPrefix } : null),
    // The endpoints are read with the caller's client too (ioredis: the constructor above refused any other).
    webhooks: webhooks ? new RedisWebhooks(client as unknown as RedisClient, keyPrefix, sharded) : NO_WEBHOOKS,
  }
}

/** A publisher told the cluster has no webhooks (the library's `webhooks: false`). */
const NO_WEBHOOKS: WebhookEndpointSource = { version: async () => 0, endpoints: async () => [] }
