import { Redis, Cluster, type RedisOptions } from 'ioredis'
import type { RedisTarget } from '../config/index.js'
import type { Broker, MessageListener, NodeInfo, StateListener } from './broker.js'
import { Tripwire } from './tripwire.js'

type Client = Redis | Cluster

export interface RedisBrokerOptions {
  target: RedisTarget
  keyPrefix: string
  /** publishes waiting for Redis beyond this many are refused rather than queued without end */
  maxPendingPublishes?: number
  /** ms to hold publishes buffered during an outage after Redis is back, so other nodes resubscribe first */
  replayDelayMs?: number
  onError?: (err: Error) => void
}

// Reconnect quickly at first, then every 2 s, with jitter so a fleet does not
// reconnect in lockstep after a Redis restart.
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000) * (0.5 + Math.random() / 2)

export type RedisClient = Client

// How long a publish waits for Redis to take it before it is answered as held
// (it stays queued on the connection). A paused Redis keeps its socket open
// and answers nothing: without a deadline the API call waited for as long as
// the pause, while the contract is that what is published during an outage is
// held and delivered after.
export const PUBLISH_WAIT_MS = 500

// Best-effort work on shutdown: a socket to a Redis that just died can still
// look ready, and its replies would then wait for a reconnect that close() cancels.
const SHUTDOWN_WAIT_MS = 1000
async function atMost (p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p.catch(() => {}), new Promise((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}

export class RedisBroker implements Broker {
  readonly kind = 'redis' as const
  /** the command connection, shared with the limit and revocation stores */
  readonly client: Client
  private readonly sub: Client
  private readonly listeners: MessageListener[] = []
  private readonly stateListeners: StateListener[] = []
  private readonly registryKey: string
  private readonly nodeKey: (id: string) => string
  private readonly maxPending: number
  /** Redis Cluster: channels use sharded pub/sub */
  readonly sharded: boolean
  private readonly make: (subscriber: boolean, name?: string, extra?: RedisOptions) => Client
  private readonly pubConn: Client
  /** publishes that were in flight when the connection dropped, replayed first */
  private retry: Array<[string, string]> = []
  private readonly extra: Client[] = []
  private pending = 0
  /** publishes answered as held after PUBLISH_WAIT_MS that Redis has not taken yet */
  private overdue = 0
  /** publishes made while disconnected, replayed in order once Redis is back */
  private outbox: Array<[string, string]> = []
  private replayTimer: NodeJS.Timeout | null = null
  private lastHealthy = false
  private closing = false
  // Fail what waits when close() starts: commands queued while Redis is unreachable
  // would otherwise wait for ever, since ioredis keeps its offline queue after disconnect().
  private readonly closed = new Tripwire()
  // Fail what waits on the publish connection when it drops. With
  // autoResendUnfulfilledCommands off, ioredis forgets the commands in flight at
  // that moment without settling them: a publish (or the probe, or a replay
  // batch) would wait for ever.
  private readonly pubWaiters = new Tripwire()

  constructor (private readonly opts: RedisBrokerOptions) {
    const redisOptions: RedisOptions = {
      lazyConnect: true,
      // Commands wait through a reconnect instead of failing after N retries;
      // `maxPendingPublishes` bounds how many may wait.
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
      retryStrategy,
      connectTimeout: 5000,
      // RESP2 keeps pub/sub on a dedicated connection semantics that ioredis 5 expects.
      connectionName: 'herald',
    }
    const t = opts.target
    if (t.password !== undefined) redisOptions.password = t.password
    this.sharded = t.clusterNodes !== undefined
    const make = (subscriber: boolean, name = 'herald', extra: RedisOptions = {}): Client => {
      const o = { ...redisOptions, ...extra, connectionName: name }
      return t.clusterNodes !== undefined
        // On Redis Cluster, sharded pub/sub (SSUBSCRIBE/SPUBLISH) keeps each
        // channel on the shard that owns its slot instead of every node.
        ? new Cluster(t.clusterNodes, { redisOptions: o, clusterRetryStrategy: retryStrategy, lazyConnect: true, shardedSubscribers: subscriber })
        : t.sentinels !== undefined
          // failoverDetector: follow Sentinel's +switch-master at once rather
          // than when the old master drops us (measured: 0.5 s against 11 s).
          ? new Redis({ ...o, sentinels: t.sentinels, name: t.sentinelName ?? 'mymaster', sentinelRetryStrategy: retryStrategy, failoverDetector: true })
          : new Redis(t.url!, o)
    }
    this.make = make
    this.client = make(false)
    this.sub = make(true)
    // Publishes get their own connection that never re-sends on its own: what
    // was in flight when Redis went away comes back to us as an error and joins
    // the replay, which waits until the other nodes have resubscribed. Delivery
    // across an outage is therefore at least once (ids let clients dedupe).
    this.pubConn = make(false, 'herald-pub', { autoResendUnfulfilledCommands: false, enableOfflineQueue: false })
    this.pubConn.on('close', () => this.pubWaiters.trip(new Error('the Redis connection dropped with the publish in flight')))
    // Registry keys share one hash slot so they can be written in one MULTI on Redis Cluster.
    this.registryKey = `${opts.keyPrefix}{registry}:nodes`
    this.nodeKey = (id) => `${opts.keyPrefix}{registry}:node:${id}`
    this.maxPending = opts.maxPendingPublishes ?? 10_000

    for (const c of [this.client, this.sub, this.pubConn]) {
      // An unhandled 'error' event would crash the process; Redis faults are expected.
      c.on('error', (err: Error) => this.opts.onError?.(err))
      for (const ev of ['ready', 'close', 'end', 'reconnecting', '+node', '-node']) c.on(ev, () => this.updateState())
    }
    // Runs inside ioredis's reply parser: a listener's exception must not escape into it.
    const deliver = (channel: string, message: string): void => {
      for (const l of this.listeners) {
        try { l(channel, message) } catch (err) { this.opts.onError?.(err as Error) }
      }
    }
    this.sub.on(this.sharded ? 'smessage' : 'message', deliver)
  }

  get healthy (): boolean {
    return this.client.status === 'ready' && this.sub.status === 'ready' && this.pubConn.status === 'ready'
  }

  async connect (): Promise<void> {
    await Promise.all([this.client.connect(), this.sub.connect(), this.pubConn.connect()])
    this.updateState()
  }

  /**
   * Publishes made while Redis is unreachable are kept (up to the bound, then
   * refused with an error) and replayed in order after a short delay once it is
   * back, when the other nodes have had time to resubscribe. Publishes stuck on
   * a connected but unresponsive Redis (paused) count toward the same bound,
   * and are answered as held after PUBLISH_WAIT_MS (at once while an earlier
   * one is overdue): Redis takes them, in order, when it resumes; if the
   * connection drops first, they join the replay.
   */
  async publish (channels: string | readonly string[], message: string): Promise<void> {
    if (this.closing) throw new Error('broker closed')
    const list = typeof channels === 'string' ? [channels] : channels
    // All of a message's channels fit, or none is taken: a 503 then means nowhere.
    const held = this.outbox.length + this.retry.length
    if (held > 0 || !this.healthy || this.replayTimer !== null) {
      if (held + this.pending + list.length > this.maxPending) throw new Error(`Redis unreachable and the publish buffer is full (${this.maxPending})`)
      for (const c of list) this.outbox.push([c, message])
      this.scheduleReplay()
      return
    }
    if (this.pending + list.length > this.maxPending) throw new Error(`Redis publish queue full (${this.maxPending} pending)`)
    this.pending += list.length
    const sent = list.map(async (c) => await this.onPub(this.sharded ? (this.pubConn as Cluster).spublish(c, message) : this.pubConn.publish(c, message)))
    // Each settles, even when the connection drops or the broker closes under it.
    const settled = Promise.allSettled(sent).then((results) => {
      this.pending -= list.length
      results.forEach((r, i) => {
        // Dropped in flight: kept for the replay rather than lost.
        if (r.status === 'rejected') { this.retry.push([list[i]!, message]); this.scheduleReplay() }
      })
    })
    // Redis is already not answering: no point in waiting out another deadline.
    if (this.overdue > 0) return
    await this.atMostWait(settled)
  }

  /** Resolves when `settled` does, or after PUBLISH_WAIT_MS with the publish counted overdue until it settles. */
  private async atMostWait (settled: Promise<void>): Promise<void> {
    await new Promise<void>((resolve) => {
      let late = false
      const timer = setTimeout(() => { late = true; this.overdue++; resolve() }, PUBLISH_WAIT_MS)
      void settled.then(() => {
        clearTimeout(timer)
        if (late) this.overdue--
        resolve()
      })
    })
  }

  async publishNow (channel: string, message: string): Promise<void> {
    if (this.closing || !this.healthy) throw new Error('Redis unreachable')
    await this.onPub(this.sharded ? (this.pubConn as Cluster).spublish(channel, message) : this.pubConn.publish(channel, message))
  }

  async subscribe (channel: string): Promise<void> {
    const done = this.sharded ? (this.sub as Cluster).ssubscribe(channel) : this.sub.subscribe(channel)
    await this.closed.guard(done)
  }

  async unsubscribe (channel: string): Promise<void> {
    if (this.closing) return
    if (this.sharded) await (this.sub as Cluster).sunsubscribe(channel)
    else await this.sub.unsubscribe(channel)
  }

  onMessage (listener: MessageListener): void { this.listeners.push(listener) }
  onStateChange (listener: StateListener): void { this.stateListeners.push(listener) }

  async heartbeat (info: NodeInfo, ttlMs: number): Promise<boolean> {
    // Registry members stay until a live node reclaims them (deadNodes/claim/leave).
    const res = await this.client.multi()
      .set(this.nodeKey(info.id), JSON.stringify(info), 'PX', ttlMs, 'GET')
      .zadd(this.registryKey, Date.now(), info.id)
      .exec()
    const prev = res?.[0]?.[1]
    return prev !== null && prev !== undefined
  }

  async deadNodes (): Promise<string[]> {
    const ids = await this.client.zrange(this.registryKey, 0, -1)
    if (ids.length === 0) return []
    const alive = await this.client.mget(...ids.map(this.nodeKey))
    return ids.filter((_id, i) => alive[i] === null)
  }

  async claim (name: string, ttlMs: number): Promise<boolean> {
    return await this.client.set(`${this.opts.keyPrefix}{registry}:claim:${name}`, '1', 'PX', ttlMs, 'NX') === 'OK'
  }

  async nodes (): Promise<NodeInfo[]> {
    const ids = await this.client.zrange(this.registryKey, 0, -1)
    if (ids.length === 0) return []
    const raw = await this.client.mget(...ids.map(this.nodeKey))
    const out: NodeInfo[] = []
    for (const r of raw) if (r !== null) out.push(JSON.parse(r) as NodeInfo)
    return out
  }

  async leave (nodeId: string): Promise<void> {
    // Unreachable: the entry lapses by its TTL; waiting here would hold up shutdown.
    if (this.client.status !== 'ready') return
    await atMost(this.client.multi().del(this.nodeKey(nodeId)).zrem(this.registryKey, nodeId).exec(), SHUTDOWN_WAIT_MS)
  }

  /**
   * Another connection to the same Redis, for components that need their own
   * (the Socket.IO adapter); closed with the broker.
   */
  duplicate (subscriber: boolean, name: string): Client {
    const c = this.make(subscriber, name)
    c.on('error', (err: Error) => this.opts.onError?.(err))
    this.extra.push(c)
    return c
  }

  async close (): Promise<void> {
    this.closing = true
    for (const c of this.extra) c.disconnect()
    if (this.replayTimer) clearTimeout(this.replayTimer)
    const err = new Error('broker closed')
    this.closed.trip(err)
    this.pubWaiters.trip(err)
    // QUIT waits behind the offline queue, which never drains while Redis is unreachable.
    await atMost(Promise.allSettled([this.client, this.sub, this.pubConn].map((c) => c.status === 'ready' ? c.quit() : undefined)), SHUTDOWN_WAIT_MS)
    this.client.disconnect()
    this.sub.disconnect()
    this.pubConn.disconnect()
  }

  /** A command on the publish connection, settled even if the connection drops under it. */
  private async onPub<T> (command: Promise<T>): Promise<T> {
    return await this.pubWaiters.guard(command)
  }

  private updateState (): void {
    const h = this.healthy
    if (h === this.lastHealthy) return
    this.lastHealthy = h
    this.scheduleReplay()
    for (const l of this.stateListeners) l(h)
  }

  /** Replays held publishes REDIS_REPLAY_DELAY after Redis is back, when the other nodes have resubscribed. */
  private scheduleReplay (): void {
    if (!this.healthy || this.replayTimer !== null || this.closing) return
    if (this.outbox.length === 0 && this.retry.length === 0) return
    this.replayTimer = setTimeout(() => {
      this.replay().catch((err: Error) => this.opts.onError?.(err)).finally(() => {
        this.replayTimer = null
        this.scheduleReplay()
      })
    }, this.opts.replayDelayMs ?? 2000)
    this.replayTimer.unref()
  }

  private async replay (): Promise<void> {
    // In-flight failures first: they were published before anything held since.
    if (this.retry.length > 0) { this.outbox = this.retry.concat(this.outbox); this.retry = [] }
    while (this.outbox.length > 0 && this.healthy && !this.closing) {
      const batch = this.outbox.slice(0, 500)
      const pipe = this.pubConn.pipeline()
      for (const [c, m] of batch) {
        if (this.sharded) pipe.spublish(c, m)
        else pipe.publish(c, m)
      }
      const res = await this.onPub(pipe.exec())
      // A failure part-way keeps the rest (and the failed ones) for the next attempt.
      const failedAt = res === null ? 0 : res.findIndex(([err]) => err !== null)
      this.outbox.splice(0, failedAt < 0 ? batch.length : failedAt)
      if (failedAt >= 0) return
    }
  }
}
