// The three kinds every backend contract suite (test/backend/*.test.ts) runs
// against: memory (one MemoryStore shared by the backends of a test, as
// nodes share one Redis), a private standalone redis-server, and a real
// 3-master Redis Cluster. What a capability promises holds on all three, or
// the memory backend would not be a trustworthy development default.
import { Cluster, type Redis } from 'ioredis'
import type { Test } from 'tap'
import { createBackend, createMemoryBackend, type Backend, type BackendConfig } from '../../src/backend/backend.js'
import { MemoryStore } from '../../src/backend/memory-store.js'
import { metaKey, streamKey } from '../../src/backend/streams.js'
import { startRedisCluster, type RedisClusterServer } from './redis-cluster.js'
import { startRedis, type RedisServer } from './redis.js'
import { within } from './wait.js'

export type KindName = 'memory' | 'redis' | 'cluster'

/** One test's cluster: the backends it makes share their state (a store, or a key prefix on one Redis). */
export interface Space {
  readonly kind: KindName
  readonly keyPrefix: string
  /** A new backend on this space, connected; closed at the test's teardown. */
  backend (opts?: Pick<BackendConfig, 'publishBuffer' | 'replayDelayMs' | 'history'>): Promise<Backend>
  /** Connections the backends hold on Redis (by their name `herald`), or subscriptions in the memory store. */
  residue (): Promise<number>
  /** Everything stored is lost, as after FLUSHALL or a restart without persistence. */
  loseData (): Promise<void>
  /** The meta of the stream on `channel` alone is lost (evicted, deleted), its messages left. */
  loseMeta (channel: string): Promise<void>
  /** Whether the backend still holds the messages of the stream on `channel` (on Redis: its key exists). */
  holdsStream (channel: string): Promise<boolean>
  /** The server closes every subscriber connection (CLIENT KILL TYPE pubsub on each Redis); how many it closed (none in memory). */
  dropSubscribers (): Promise<number>
  /** the standalone server, for fault tests (kind `redis` only) */
  readonly redis?: RedisServer
  /**
   * Every Redis server of the space stops answering (SIGSTOP: its
   * connections stay open and look ready) until the function returned is
   * called; resumed at the test's teardown if the test did not. Absent in
   * memory.
   */
  readonly pause?: () => () => void
}

let spaces = 0

/**
 * Runs `suite` once per kind, each as a subtest of `t` with the kind's
 * server started before and stopped after. `suite` makes a fresh space per
 * test with `space(t)`.
 */
export function forEachBackend (t: Test, suite: (t: Test, space: (t: Test) => Space, kind: KindName) => void | Promise<void>, opts: { timeout?: number } = {}): void {
  t.test('memory', { timeout: opts.timeout ?? 60_000 }, async (t) => {
    await suite(t, memorySpace, 'memory')
  })
  t.test('standalone Redis', { timeout: opts.timeout ?? 60_000 }, async (t) => {
    await suite(t, redisSpace, 'redis')
  })
  t.test('Redis Cluster', { timeout: opts.timeout ?? 120_000 }, async (t) => {
    const cluster = await startRedisCluster(3)
    t.teardown(() => cluster.stop())
    await suite(t, (t) => clusterSpace(t, cluster), 'cluster')
  })
}

/** Records the backends a test makes; at its teardown they close, then `after` runs (a server stops). */
function tracked (t: Test, after: () => Promise<void> = async () => {}): (b: Backend) => Backend {
  const made: Backend[] = []
  t.teardown(async () => {
    await Promise.allSettled(made.map(async (b) => await within(3000, 'backend close', b.close())))
    await after()
  })
  return (b) => { made.push(b); return b }
}

function memorySpace (t: Test): Space {
  const store = new MemoryStore()
  const keyPrefix = `mem${++spaces}:`
  const track = tracked(t)
  return {
    kind: 'memory',
    keyPrefix,
    async backend (opts = {}) {
      const b = track(createMemoryBackend({ store, keyPrefix, history: opts.history ?? null }))
      await b.connect()
      return b
    },
    async residue () {
      let n = 0
      for (const set of store.subscribers.values()) n += set.size
      return n
    },
    async loseData () {
      for (const m of [store.nodes, store.zsets, store.hashes, store.kv, store.settings, store.streamMeta, store.streams, store.boards]) m.clear()
    },
    async loseMeta (channel) { store.streamMeta.delete(channel) },
    async holdsStream (channel) { return (store.streams.get(channel)?.expiresAt ?? 0) > Date.now() },
    async dropSubscribers () { return 0 },
  }
}

/** Pauses `servers` until the function returned is called, or the test ends. */
function paused (t: Test, servers: { pause: () => void, resume: () => void }): () => void {
  servers.pause()
  let resumed = false
  const resume = (): void => { if (!resumed) { resumed = true; servers.resume() } }
  t.teardown(resume)
  return resume
}

/** A private redis-server per space: a test's faults (kill, pause) stay its own. */
function redisSpace (t: Test): Space {
  const keyPrefix = `rs${process.pid}-${++spaces}:`
  let server: Promise<RedisServer> | null = null
  let redis: RedisServer | undefined
  const started = async (): Promise<RedisServer> => {
    server ??= startRedis().then((r) => { redis = r; return r })
    return await server
  }
  let assertions: Redis | null = null
  const admin = async (): Promise<Redis> => { assertions ??= (await started()).client(); return assertions }
  const track = tracked(t, async () => { if (server !== null) await (await server).stop() })
  return {
    kind: 'redis',
    keyPrefix,
    get redis () { return redis },
    pause: () => paused(t, redis!),
    async backend (opts = {}) {
      const r = await started()
      const b = track(createBackend({ redis: { url: r.url }, keyPrefix, ...opts }, { onError: () => {} }))
      await within(5000, 'backend connect', b.connect())
      return b
    },
    async residue () {
      return countNamed(await (await admin()).client('LIST') as string)
    },
    async loseData () {
      await (await admin()).flushall()
    },
    async loseMeta (channel) { await (await admin()).del(metaKey(channel)) },
    async holdsStream (channel) { return await (await admin()).exists(streamKey(channel)) === 1 },
    async dropSubscribers () { return Number(await (await admin()).call('CLIENT', 'KILL', 'TYPE', 'pubsub')) },
  }
}

function clusterSpace (t: Test, cluster: RedisClusterServer): Space {
  const keyPrefix = `rc${process.pid}-${++spaces}:`
  const track = tracked(t)
  const target = { clusterNodes: cluster.ports.map((port) => ({ host: '127.0.0.1', port })) }
  const masters = cluster.ports.map((p) => cluster.client(p))
  // Keys live on the master owning their slot: a cluster client finds it.
  const routed = new Cluster(target.clusterNodes, { lazyConnect: true, redisOptions: { maxRetriesPerRequest: 1 } })
  routed.on('error', () => {})
  t.teardown(() => { routed.disconnect() })
  return {
    kind: 'cluster',
    keyPrefix,
    pause: () => paused(t, cluster),
    async backend (opts = {}) {
      const b = track(createBackend({ redis: target, keyPrefix, ...opts }, { onError: () => {} }))
      await within(10_000, 'backend connect', b.connect())
      return b
    },
    async residue () {
      const lists = await Promise.all(masters.map(async (c) => await c.client('LIST') as string))
      return lists.reduce((n, l) => n + countNamed(l), 0)
    },
    async loseData () {
      await Promise.all(masters.map(async (c) => await c.flushall()))
    },
    async loseMeta (channel) { await routed.del(metaKey(channel)) },
    async holdsStream (channel) { return await routed.exists(streamKey(channel)) === 1 },
    async dropSubscribers () {
      const killed = await Promise.all(masters.map(async (c) => Number(await c.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))))
      return killed.reduce((a, b) => a + b, 0)
    },
  }
}

// Backends name their connections `herald` (and `herald-pub`); the assertion clients have no name.
const countNamed = (list: string): number => list.split('\n').filter((l) => / name=herald /.test(` ${l} `)).length
