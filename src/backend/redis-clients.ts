import { Redis, Cluster, type Command, type RedisOptions } from 'ioredis'
import type { RedisTarget } from '../config/index.js'
import { atMost } from './deadline.js'

// Every ioredis connection a node opens is made here, for one RedisTarget
// (standalone, Sentinel or Cluster), with one retry policy and a name that
// shows in CLIENT LIST. Capabilities receive the connections they use; none
// creates its own.

export type RedisClient = Redis | Cluster

// Reconnect quickly at first, then every 2 s, with jitter so a fleet does not
// reconnect in lockstep after a Redis restart.
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000) * (0.5 + Math.random() / 2)

// Best-effort work on shutdown: a socket to a Redis that just died can still
// look ready, and its replies would then wait for a reconnect that close() cancels.
export const SHUTDOWN_WAIT_MS = 1000

export interface OpenOptions {
  /** a pub/sub connection (on a Cluster: sharded subscribers, one per shard) */
  subscriber?: boolean
  /** ioredis options on top of the defaults */
  options?: RedisOptions
}

/** The connections of one backend: opened here, closed together. */
export class RedisConnections {
  /** Redis Cluster: channels use sharded pub/sub (SSUBSCRIBE/SPUBLISH) */
  readonly sharded: boolean
  private readonly own: RedisClient[] = []
  private readonly lent: RedisClient[] = []

  constructor (private readonly target: RedisTarget, private readonly onError: (err: Error) => void = () => {}) {
    this.sharded = target.clusterNodes !== undefined
  }

  /** A connection the backend's capabilities use; connected by connect(), quit by close(). */
  open (name: string, o: OpenOptions = {}): RedisClient {
    const c = this.make(name, o)
    this.own.push(c)
    return c
  }

  /**
   * A connection handed to a library that drives it itself (the Socket.IO
   * adapter): it connects on first use and is dropped, not quit, at close.
   */
  lend (name: string, o: OpenOptions = {}): RedisClient {
    const c = this.make(name, o)
    // Such a library may send commands without handling their failure (the
    // Socket.IO adapter's subscribes in its constructor, its publishes). One
    // still queued when the node closes is rejected by disconnect() ("Connection
    // is closed."), and an unhandled rejection ends the process: each command
    // gets a handler here that does nothing, so the library's own awaits, and
    // only they, see the failure. Not reported: ioredis sends its handshake
    // through here too and ignores what an older Redis refuses of it
    // (CLIENT SETINFO before Redis 7.2).
    const send = c.sendCommand.bind(c) as (command: Command, ...rest: unknown[]) => Promise<unknown>
    ;(c as unknown as { sendCommand: typeof send }).sendCommand = (command, ...rest) => {
      command.promise.catch(() => {})
      return send(command, ...rest)
    }
    this.lent.push(c)
    return c
  }

  async connect (): Promise<void> {
    await Promise.all(this.own.map(async (c) => await c.connect()))
  }

  async close (): Promise<void> {
    for (const c of this.lent) c.disconnect()
    // QUIT waits behind the offline queue, which never drains while Redis is unreachable.
    await atMost(Promise.allSettled(this.own.map(async (c) => c.status === 'ready' ? await c.quit() : undefined)), SHUTDOWN_WAIT_MS)
    for (const c of this.own) c.disconnect()
  }

  private make (name: string, o: OpenOptions): RedisClient {
    const t = this.target
    const options: RedisOptions = {
      lazyConnect: true,
      // Commands wait through a reconnect instead of failing after N retries;
      // the broker's publish buffer bounds how many publishes may wait.
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
      retryStrategy,
      connectTimeout: 5000,
      // RESP2, as ioredis 5 spoke: the replies Herald's scripts and the
      // Socket.IO adapter read are the shapes they were built on; RESP3 would
      // bring nothing a node uses.
      protocol: 2,
      ...(t.password !== undefined ? { password: t.password } : {}),
      ...o.options,
      connectionName: name,
    }
    const c: RedisClient = t.clusterNodes !== undefined
      // On Redis Cluster, sharded pub/sub (SSUBSCRIBE/SPUBLISH) keeps each
      // channel on the shard that owns its slot instead of every node.
      ? new Cluster(t.clusterNodes, { redisOptions: options, clusterRetryStrategy: retryStrategy, lazyConnect: true, shardedSubscribers: o.subscriber === true })
      : t.sentinels !== undefined
        // failoverDetector: follow Sentinel's +switch-master at once rather
        // than when the old master drops us (measured: 0.5 s against 11 s).
        ? new Redis({ ...options, sentinels: t.sentinels, name: t.sentinelName ?? 'mymaster', sentinelRetryStrategy: retryStrategy, failoverDetector: true })
        : new Redis(t.url!, options)
    // An unhandled 'error' event would crash the process; Redis faults are expected.
    c.on('error', (err: Error) => this.onError(err))
    return c
  }
}
