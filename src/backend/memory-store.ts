import type { RateLimiterMemory } from 'rate-limiter-flexible'
import type { NodeInfo } from './nodes.js'

/**
 * What memory capabilities that share it see as "the cluster": the state a
 * Redis holds for Redis capabilities. A node started without Redis gets a
 * private store; tests give one store to several backends, as nodes share
 * one Redis, so every contract suite runs against memory too.
 */
export class MemoryStore {
  /** pub/sub: who listens on each channel */
  readonly subscribers = new Map<string, Set<{ deliver (channel: string, message: string): void }>>()
  readonly nodes = new Map<string, { info: NodeInfo, expiresAt: number }>()
  /** sorted-set stand-ins (member -> score) for the connection slots and the revocation log */
  readonly zsets = new Map<string, Map<string, number>>()
  /** hashes (field -> value): per-node connection records, eviction lists */
  readonly hashes = new Map<string, Map<string, string>>()
  /** sets (group members, a user's groups) */
  readonly sets = new Map<string, Set<string>>()
  /** string keys with an optional expiry (ms since epoch, 0 = none) */
  readonly kv = new Map<string, { value: string, expiresAt: number }>()
  /** shared settings: fields and when they lapse */
  readonly settings = new Map<string, { fields: Map<string, string>, expiresAt: number }>()
  /** leaderboards: a board's minute (its key) -> counts per member, and when it lapses */
  readonly boards = new Map<string, { scores: Map<string, number>, expiresAt: number }>()
  /** rate counters by name and budget */
  readonly rates = new Map<string, RateLimiterMemory>()
  /** history: each stream's meta (epoch, top) by channel, outliving its messages */
  readonly streamMeta = new Map<string, { epoch: string, top: number, expiresAt: number }>()
  /** history: each stream's retained messages by channel, oldest first */
  readonly streams = new Map<string, { messages: Array<{ offset: number, message: string }>, expiresAt: number }>()
  /** webhooks: the endpoints, and per endpoint its queue, retries, dead letters, log (src/backend/webhooks-memory.ts) */
  readonly webhooks = new MemoryWebhookState()
}

/** A ready or claimed job in an endpoint's queue. */
export interface MemoryQueued { entry: string, attempts: number, job: string, owner: string | null, claimedAt: number }

export class MemoryWebhookState {
  /** id -> definition JSON */
  readonly endpoints = new Map<string, string>()
  readonly enabled = new Set<string>()
  readonly disabled = new Map<string, string>()
  version = 0
  /** per endpoint, in enqueue order */
  readonly queues = new Map<string, Map<string, MemoryQueued>>()
  seq = 0
  readonly retries = new Map<string, Array<{ due: number, attempts: number, job: string }>>()
  readonly age = new Map<string, Map<string, number>>()
  /** per endpoint, oldest first */
  readonly dead = new Map<string, Map<string, { job: string, meta: string, at: number }>>()
  readonly log = new Map<string, string[]>()
  readonly breakers = new Map<string, string>()
}
