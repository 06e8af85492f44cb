import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter'
import { Cluster } from 'ioredis'
import type { RedisTarget } from '../config/index.js'
import type { Broker, Publish } from './broker.js'
import { MemoryBroker } from './broker-memory.js'
import { RedisBroker, type PublishingClient } from './broker-redis.js'
import type { GroupStore } from './groups.js'
import { MemoryGroups } from './groups-memory.js'
import { RedisGroups } from './groups-redis.js'
import type { Leaderboards } from './leaderboards.js'
import { MemoryLeaderboards } from './leaderboards-memory.js'
import { RedisLeaderboards } from './leaderboards-redis.js'
import { MemoryStore } from './memory-store.js'
import type { NodeStore } from './nodes.js'
import { MemoryNodes } from './nodes-memory.js'
import { RedisNodes } from './nodes-redis.js'
import type { PublishKeys } from './publish-keys.js'
import { MemoryPublishKeys } from './publish-keys-memory.js'
import { RedisPublishKeys } from './publish-keys-redis.js'
import type { RateStore } from './rates.js'
import { MemoryRates } from './rates-memory.js'
import { RedisRates } from './rates-redis.js'
import { RedisConnections, type RedisClient } from './redis-clients.js'
import type { AdmissionStore } from './admissions.js'
import { MemoryAdmissions } from './admissions-memory.js'
import { RedisAdmissions } from './admissions-redis.js'
import type { RevocationStore } from './revocations.js'
import { MemoryRevocations } from './revocations-memory.js'
import { RedisRevocations } from './revocations-redis.js'
import type { SharedSettings } from './settings.js'
import { MemorySettings } from './settings-memory.js'
import { RedisSettings } from './settings-redis.js'
import type { SlotStore } from './slots.js'
import { MemorySlots } from './slots-memory.js'
import { RedisSlots } from './slots-redis.js'
import type { HistoryConfig, StreamStore } from './streams.js'
import { MemoryStreams } from './streams-memory.js'
import { RedisStreams } from './streams-redis.js'
import type { WebhookEndpointSource, WebhookStore } from './webhooks.js'
import { MemoryWebhooks } from './webhooks-memory.js'
import { RedisWebhooks } from './webhooks-redis.js'

// The cluster backend a node stands on, as capabilities: each an interface
// with a memory and a Redis implementation side by side (broker.ts,
// broker-memory.ts, broker-redis.ts, ...). Modules receive the capability they
// use and never learn which implementation it is; only this file chooses.

export type { PublishingClient }

/**
 * What the publish path (src/events/publisher.ts) uses. Every entry point
 * supplies it: a node its whole backend, the publisher library the
 * capabilities it builds over its caller's client (backendOverClient, in
 * over-client.ts). A capability the publish path starts to use is added
 * here, so an entry point that could not supply it does not compile.
 */
export interface PublishCapabilities {
  /** pub/sub, the stream append (when history is on), and the webhook jobs of each publish */
  readonly broker: Publish
  /** the webhook endpoints, which each publish is matched against */
  readonly webhooks: WebhookEndpointSource
}

export interface Backend extends PublishCapabilities {
  readonly kind: 'memory' | 'redis'
  /** pub/sub between nodes, with the outage buffer */
  readonly broker: Broker
  /** the registry of live nodes and cluster-wide claims */
  readonly nodes: NodeStore
  /** connection slots per user and per IP, per-node records, eviction lists */
  readonly slots: SlotStore
  /** durable revocations and their log */
  readonly revocations: RevocationStore
  /** the revocation check and the slots of many connecting clients, in one batch */
  readonly admissions: AdmissionStore
  /** per-key action budgets (message limits) */
  readonly rates: RateStore
  /** fields the nodes agree on, first writer wins (development keys) */
  readonly settings: SharedSettings
  /** reading the streams' history (appends go through the broker); null when history is off */
  readonly streams: StreamStore | null
  /** counts per member per minute, the highest kept (the dashboard's top users and event types) */
  readonly leaderboards: Leaderboards
  /** webhook endpoints and the durable queue of deliveries (enqueues go through the broker, with their publish) */
  readonly webhooks: WebhookStore
  /** group membership set through the API */
  readonly groups: GroupStore
  /** idempotency keys of client publishes */
  readonly publishKeys: PublishKeys
  /**
   * Whether what the backend holds survives its restart: Redis with AOF on
   * (every master of a Cluster); never the memory backend. The webhook queue
   * is only as durable as this.
   */
  persistent (): Promise<boolean>
  /**
   * The Socket.IO adapter that makes rooms and fetchSockets span the
   * cluster, on channels under `prefix`; undefined: Socket.IO's in-memory
   * default, which is the whole cluster when the backend is memory.
   */
  socketIoAdapter (prefix: string): ((nsp: any) => any) | undefined
  connect (): Promise<void>
  close (): Promise<void>
}

export interface BackendConfig {
  /** null: the memory backend (one process) */
  redis: RedisTarget | null
  keyPrefix: string
  /** publishes a node holds through an outage (REDIS_PUBLISH_BUFFER) */
  publishBuffer?: number
  /** ms to wait after Redis is back before replaying them (REDIS_REPLAY_DELAY) */
  replayDelayMs?: number
  /** what each stream keeps (HISTORY_SIZE, HISTORY_TTL); null or absent: history off */
  history?: HistoryConfig | null
}

export interface BackendHooks {
  /** Redis faults (expected, and repeated on every retry) */
  onError?: (err: Error) => void
}

/** The backend configuration selects: memory without Redis, otherwise Redis standalone, Sentinel or Cluster. */
export function createBackend (config: BackendConfig, hooks: BackendHooks = {}): Backend {
  return config.redis === null ? createMemoryBackend({ keyPrefix: config.keyPrefix, history: config.history ?? null }) : createRedisBackend(config.redis, config, hooks)
}

/**
 * A backend in this process. Backends given one store see one cluster, as
 * nodes on one Redis do (tests run several on one store).
 */
export function createMemoryBackend (opts: { store?: MemoryStore, keyPrefix?: string, history?: HistoryConfig | null } = {}): Backend {
  const store = opts.store ?? new MemoryStore()
  const prefix = opts.keyPrefix ?? 'herald:'
  const history = opts.history ?? null
  const broker = new MemoryBroker(store, history, prefix)
  const slots = new MemorySlots(store, prefix)
  const revocations = new MemoryRevocations(store, prefix)
  return {
    kind: 'memory',
    broker,
    nodes: new MemoryNodes(store),
    slots,
    revocations,
    admissions: new MemoryAdmissions(slots, revocations),
    rates: new MemoryRates(store, prefix),
    settings: new MemorySettings(store, prefix),
    streams: history === null ? null : new MemoryStreams(store, history),
    leaderboards: new MemoryLeaderboards(store, prefix),
    webhooks: new MemoryWebhooks(store, prefix),
    groups: new MemoryGroups(store, prefix),
    publishKeys: new MemoryPublishKeys(store, prefix),
    persistent: async () => false,
    socketIoAdapter: () => undefined,
    async connect () {},
    async close () { await broker.close() },
  }
}

function createRedisBackend (target: RedisTarget, config: BackendConfig, hooks: BackendHooks): Backend {
  const onError = hooks.onError ?? (() => {})
  const connections = new RedisConnections(target, onError)
  const prefix = config.keyPrefix
  const history = config.history ?? null
  // One command connection for every capability; pub/sub on two of its own.
  const client = connections.open('herald')
  const broker = new RedisBroker({
    sub: connections.open('herald', { subscriber: true }),
    pub: connections.open('herald-pub', { options: { autoResendUnfulfilledCommands: false, enableOfflineQueue: false } }),
    peers: [client],
    sharded: connections.sharded,
    ...(config.publishBuffer !== undefined ? { maxPendingPublishes: config.publishBuffer } : {}),
    ...(config.replayDelayMs !== undefined ? { replayDelayMs: config.replayDelayMs } : {}),
    // Appends run on the publish connection, with publishes, in one order.
    history,
    keyPrefix: prefix,
    onError,
  })
  const slots = new RedisSlots(client, prefix)
  const revocations = new RedisRevocations(client, prefix)
  return {
    kind: 'redis',
    broker,
    nodes: new RedisNodes(client, prefix),
    slots,
    revocations,
    admissions: new RedisAdmissions(client, prefix, slots, revocations),
    rates: new RedisRates(client, prefix),
    settings: new RedisSettings(client, prefix),
    streams: history === null ? null : new RedisStreams(client, history),
    leaderboards: new RedisLeaderboards(client, prefix),
    webhooks: new RedisWebhooks(client, prefix, connections.sharded),
    groups: new RedisGroups(client, prefix),
    publishKeys: new RedisPublishKeys(client, prefix),
    async persistent () {
      // AOF: what an acknowledged write needs to outlive a restart (RDB
      // snapshots lose what came after the last one). Every master of a Cluster.
      const servers = client instanceof Cluster ? client.nodes('master') : [client]
      const infos = await Promise.all(servers.map(async (c) => await c.info('persistence')))
      return infos.length > 0 && infos.every((i) => /^aof_enabled:1\s*$/m.test(i))
    },
    socketIoAdapter (channelPrefix) {
      // Named apart: the classic adapter pattern-subscribes to its own
      // `<prefix>sio#…` channels; Herald's connections never pattern-subscribe.
      const pub = connections.lend('herald-sio')
      const sub = connections.lend('herald-sio', { subscriber: true })
      // Static: two sharded subscriptions per node (the namespace channel and
      // its response channel), however many rooms. The default, dynamic, adds a
      // sharded subscription per room per node, i.e. one per user on top of
      // Herald's own per-user channel, doubling Redis subscriptions and the
      // SSUBSCRIBE churn on every connect and disconnect. Herald's events never
      // travel through the adapter (the hub delivers them), so the adapter only
      // carries what application code asks for (io.to(room).emit, fetchSockets,
      // disconnectSockets): rare enough that every node receiving every adapter
      // broadcast costs less than a subscription per user.
      return connections.sharded
        ? createShardedAdapter(pub, sub, { channelPrefix: channelPrefix, subscriptionMode: 'static' })
        : createAdapter(pub, sub, { key: channelPrefix })
    },
    async connect () {
      await connections.connect()
      broker.checkState()
    },
    async close () {
      await broker.close()
      await connections.close()
    },
  }
}
