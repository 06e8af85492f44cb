import type { Cluster } from 'ioredis'
import type { Broker, MessageListener, Publish, StateListener } from './broker.js'
import type { RedisClient } from './redis-clients.js'
import { Tripwire } from './tripwire.js'

export interface RedisBrokerOptions {
  /** the subscriber connection (SSUBSCRIBE on a Cluster) */
  sub: RedisClient
  /**
   * the publish connection, which must never re-send on its own
   * (autoResendUnfulfilledCommands and the offline queue off): what was in
   * flight when Redis went away comes back to the broker as an error and
   * joins the replay, which waits until the other nodes have resubscribed
   */
  pub: RedisClient
  /**
   * the backend's other connections: the broker is healthy only while they
   * are ready too, since a node whose command connection is down cannot
   * admit connections or count limits either
   */
  peers?: RedisClient[]
  /** Redis Cluster: sharded pub/sub */
  sharded: boolean
  /** publishes waiting for Redis beyond this many are refused rather than queued without end */
  maxPendingPublishes?: number
  /** ms to hold publishes buffered during an outage after Redis is back, so other nodes resubscribe first */
  replayDelayMs?: number
  onError?: (err: Error) => void
}

// How long a publish waits for Redis to take it before it is answered as held
// (it stays queued on the connection). A paused Redis keeps its socket open
// and answers nothing: without a deadline the API call waited for as long as
// the pause, while the contract is that what is published during an outage is
// held and delivered after.
export const PUBLISH_WAIT_MS = 500

export class RedisBroker implements Broker {
  private readonly sub: RedisClient
  private readonly pubConn: RedisClient
  private readonly watched: RedisClient[]
  private readonly listeners: MessageListener[] = []
  private readonly stateListeners: StateListener[] = []
  private readonly maxPending: number
  private readonly sharded: boolean
  /** publishes that were in flight when the connection dropped, replayed first */
  private retry: Array<[string, string]> = []
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
    this.sub = opts.sub
    this.pubConn = opts.pub
    this.sharded = opts.sharded
    this.watched = [opts.sub, opts.pub, ...(opts.peers ?? [])]
    this.maxPending = opts.maxPendingPublishes ?? 10_000
    this.pubConn.on('close', () => this.pubWaiters.trip(new Error('the Redis connection dropped with the publish in flight')))
    for (const c of this.watched) {
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
    return this.watched.every((c) => c.status === 'ready')
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

  /** Tells the state listeners where the connections stand now (after the backend connected them). */
  checkState (): void { this.updateState() }

  /** Stops; the backend closes the connections after. */
  async close (): Promise<void> {
    this.closing = true
    if (this.replayTimer) clearTimeout(this.replayTimer)
    const err = new Error('broker closed')
    this.closed.trip(err)
    this.pubWaiters.trip(err)
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

/** The caller's own client, as the publisher library gets it: ioredis, standalone or Cluster. */
export interface PublishingClient {
  publish (channel: string, message: string): Promise<unknown>
  spublish?: (channel: string, message: string) => Promise<unknown>
  /** ioredis: true on a Cluster */
  readonly isCluster?: boolean
}

/**
 * Publishing over a client someone else owns (the publisher library's
 * direct-to-Redis mode): each channel at once, failures to the caller. No
 * outage buffer: the caller is a service with its own retry policy, not a
 * node that must answer within its deadline.
 */
export class ClientPublish implements Publish {
  private readonly one: (channel: string, message: string) => Promise<unknown>

  /** `sharded` (SPUBLISH) defaults to true on an ioredis Cluster, where nodes listen with SSUBSCRIBE. */
  constructor (client: PublishingClient, sharded = client.isCluster === true) {
    // Nodes on a Redis Cluster listen with SSUBSCRIBE, which a plain PUBLISH
    // never reaches: the publish would succeed, return an id and reach no one.
    if (sharded && typeof client.spublish !== 'function') throw new Error('sharded publishing needs a Redis client with spublish (ioredis 5 or later)')
    this.one = sharded
      ? async (c, m) => await client.spublish!(c, m)
      : async (c, m) => await client.publish(c, m)
  }

  async publish (channels: string | readonly string[], message: string): Promise<void> {
    await Promise.all((typeof channels === 'string' ? [channels] : channels).map(async (c) => await this.one(c, message)))
  }
}
